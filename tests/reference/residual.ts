/** Float64 reference of the gated residual out = x + gate[b,:]·y, gate a chunk of mod [B, nC·D]. */
export type F64 = Float64Array;

export function gateResidual(
  x: F64,
  y: F64,
  mod: F64,
  B: number,
  T: number,
  D: number,
  gateChunk: number,
): F64 {
  const nc = mod.length / (B * D);
  const out = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const i = (b * T + t) * D + d;
        out[i] = x[i] + mod[b * nc * D + gateChunk * D + d] * y[i];
      }
    }
  }
  return out;
}

/** dy = gate·dout; dmod with only the gate chunk columns non-zero (Σ_t dout·y). dx = dout. */
export function gateResidualBackward(
  y: F64,
  mod: F64,
  dout: F64,
  B: number,
  T: number,
  D: number,
  gateChunk: number,
): { dy: F64; dmod: F64 } {
  const nc = mod.length / (B * D);
  const dy = new Float64Array(y.length), dmod = new Float64Array(mod.length);
  for (let b = 0; b < B; b++) {
    const g = b * nc * D + gateChunk * D;
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const i = (b * T + t) * D + d;
        dy[i] = mod[g + d] * dout[i];
        dmod[g + d] += dout[i] * y[i];
      }
    }
  }
  return { dy, dmod };
}
