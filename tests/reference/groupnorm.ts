/**
 * Float64 reference of GroupNorm (PyTorch nn.GroupNorm: biased variance, affine γ, β) over
 * NHWC x [B, S, C] with G groups of consecutive channels, forward and backward. Plain loops.
 */
export type F64 = Float64Array;

export interface GnShape {
  B: number;
  S: number;
  C: number;
  G: number;
  eps: number;
}

/** Mean and 1/sqrt(var + eps) of each (sample, group). */
export function groupStats(x: F64, s: GnShape): { mean: F64; rstd: F64 } {
  const Cg = s.C / s.G, n = s.S * Cg;
  const mean = new Float64Array(s.B * s.G), rstd = new Float64Array(s.B * s.G);
  for (let b = 0; b < s.B; b++) {
    for (let g = 0; g < s.G; g++) {
      let sum = 0;
      for (let p = 0; p < s.S; p++) {
        for (let j = 0; j < Cg; j++) sum += x[(b * s.S + p) * s.C + g * Cg + j];
      }
      const m = sum / n;
      let v = 0;
      for (let p = 0; p < s.S; p++) {
        for (let j = 0; j < Cg; j++) v += (x[(b * s.S + p) * s.C + g * Cg + j] - m) ** 2;
      }
      mean[b * s.G + g] = m;
      rstd[b * s.G + g] = 1 / Math.sqrt(v / n + s.eps);
    }
  }
  return { mean, rstd };
}

/** x̂ of every element. */
function normalized(x: F64, s: GnShape): F64 {
  const { mean, rstd } = groupStats(x, s);
  const Cg = s.C / s.G;
  return x.map((v, i) => {
    const c = i % s.C, b = Math.floor(i / (s.S * s.C));
    const bg = b * s.G + Math.floor(c / Cg);
    return (v - mean[bg]) * rstd[bg];
  });
}

export function groupNorm(x: F64, gamma: F64, beta: F64, s: GnShape): F64 {
  return normalized(x, s).map((v, i) => v * gamma[i % s.C] + beta[i % s.C]);
}

export function groupNormBackward(
  x: F64,
  gamma: F64,
  dy: F64,
  s: GnShape,
): { dx: F64; dgamma: F64; dbeta: F64 } {
  const xh = normalized(x, s);
  const { rstd } = groupStats(x, s);
  const Cg = s.C / s.G, n = s.S * Cg;
  const dgamma = new Float64Array(s.C), dbeta = new Float64Array(s.C);
  for (let i = 0; i < x.length; i++) {
    dgamma[i % s.C] += dy[i] * xh[i];
    dbeta[i % s.C] += dy[i];
  }
  const dx = new Float64Array(x.length);
  for (let b = 0; b < s.B; b++) {
    for (let g = 0; g < s.G; g++) {
      const idx: number[] = [];
      for (let p = 0; p < s.S; p++) {
        for (let j = 0; j < Cg; j++) idx.push((b * s.S + p) * s.C + g * Cg + j);
      }
      let m1 = 0, m2 = 0;
      for (const i of idx) {
        const gh = dy[i] * gamma[i % s.C];
        m1 += gh / n;
        m2 += gh * xh[i] / n;
      }
      const r = rstd[b * s.G + g];
      for (const i of idx) dx[i] = r * (dy[i] * gamma[i % s.C] - m1 - xh[i] * m2);
    }
  }
  return { dx, dgamma, dbeta };
}
