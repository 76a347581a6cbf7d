/**
 * Float64 reference of LayerNorm (no affine, biased variance, eps 1e-6) fused with adaLN
 * modulate: y[b,t,:] = x̂·(1 + scale[b,:]) + shift[b,:], shift and scale being chunks of
 * mod [B, nChunks·D] (chunk i is columns i·D .. i·D+D−1).
 */
export type F64 = Float64Array;

export const LN_EPS = 1e-6;

/** Mean and 1/sqrt(var + eps) of each row of x [rows, D]. */
export function rowStats(x: F64, rows: number, D: number): { mean: F64; rstd: F64 } {
  const mean = new Float64Array(rows), rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let d = 0; d < D; d++) s += x[r * D + d];
    const m = s / D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[r * D + d] - m) ** 2;
    mean[r] = m;
    rstd[r] = 1 / Math.sqrt(v / D + LN_EPS);
  }
  return { mean, rstd };
}

export function layerNormModulate(
  x: F64,
  mod: F64,
  B: number,
  T: number,
  D: number,
  shiftChunk: number,
  scaleChunk: number,
): F64 {
  const nc = mod.length / (B * D);
  const { mean, rstd } = rowStats(x, B * T, D);
  const y = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      for (let d = 0; d < D; d++) {
        const xh = (x[r * D + d] - mean[r]) * rstd[r];
        const scale = mod[b * nc * D + scaleChunk * D + d];
        const shift = mod[b * nc * D + shiftChunk * D + d];
        y[r * D + d] = xh * (1 + scale) + shift;
      }
    }
  }
  return y;
}

/** dx, and dmod with only the shift and scale chunk columns non-zero. */
export function layerNormModulateBackward(
  x: F64,
  mod: F64,
  dy: F64,
  B: number,
  T: number,
  D: number,
  shiftChunk: number,
  scaleChunk: number,
): { dx: F64; dmod: F64 } {
  const nc = mod.length / (B * D);
  const { mean, rstd } = rowStats(x, B * T, D);
  const dx = new Float64Array(x.length), dmod = new Float64Array(mod.length);
  for (let b = 0; b < B; b++) {
    const sc = b * nc * D + scaleChunk * D, sh = b * nc * D + shiftChunk * D;
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      let sg = 0, sgx = 0;
      for (let d = 0; d < D; d++) {
        const xh = (x[r * D + d] - mean[r]) * rstd[r];
        const g = dy[r * D + d] * (1 + mod[sc + d]);
        sg += g;
        sgx += g * xh;
        dmod[sh + d] += dy[r * D + d];
        dmod[sc + d] += dy[r * D + d] * xh;
      }
      for (let d = 0; d < D; d++) {
        const xh = (x[r * D + d] - mean[r]) * rstd[r];
        const g = dy[r * D + d] * (1 + mod[sc + d]);
        dx[r * D + d] = rstd[r] * (g - sg / D - xh * sgx / D);
      }
    }
  }
  return { dx, dmod };
}
