/**
 * Float64 reference of multi-head self-attention over timm/DiT's qkv layout: qkv [B, T, 3·D]
 * with the last axis (3, heads, dh); out [B, T, D] with heads concatenated.
 */
export type F64 = Float64Array;

/** Softmax probabilities P[b,h,i,j] of the scaled scores (the forward's intermediate). */
function probs(qkv: F64, B: number, T: number, D: number, heads: number): F64 {
  const dh = D / heads, scale = 1 / Math.sqrt(dh), rs = 3 * D;
  const P = new Float64Array(B * heads * T * T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * heads + h) * T + i) * T;
        let m = -Infinity;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let c = 0; c < dh; c++) {
            s += qkv[(b * T + i) * rs + h * dh + c] * qkv[(b * T + j) * rs + D + h * dh + c];
          }
          P[row + j] = s * scale;
          m = Math.max(m, s * scale);
        }
        let l = 0;
        for (let j = 0; j < T; j++) l += P[row + j] = Math.exp(P[row + j] - m);
        for (let j = 0; j < T; j++) P[row + j] /= l;
      }
    }
  }
  return P;
}

export function attention(qkv: F64, B: number, T: number, D: number, heads: number): F64 {
  const dh = D / heads, rs = 3 * D;
  const P = probs(qkv, B, T, D, heads);
  const out = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * heads + h) * T + i) * T;
        for (let j = 0; j < T; j++) {
          for (let c = 0; c < dh; c++) {
            out[(b * T + i) * D + h * dh + c] += P[row + j] *
              qkv[(b * T + j) * rs + 2 * D + h * dh + c];
          }
        }
      }
    }
  }
  return out;
}

/** dqkv [B, T, 3·D] given dout [B, T, D]. */
export function attentionBackward(
  qkv: F64,
  dout: F64,
  B: number,
  T: number,
  D: number,
  heads: number,
): F64 {
  const dh = D / heads, scale = 1 / Math.sqrt(dh), rs = 3 * D;
  const P = probs(qkv, B, T, D, heads);
  const dqkv = new Float64Array(qkv.length);
  for (let b = 0; b < B; b++) {
    // index of q[b, t, h, c] in qkv (k is + D, v is + 2·D)
    const q = (t: number, h: number, c: number) => (b * T + t) * rs + h * dh + c;
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const row = ((b * heads + h) * T + i) * T;
        // dP_ij = dO_i·v_j; dS_ij = P_ij (dP_ij − Σ_k P_ik dP_ik)
        const dP = new Float64Array(T);
        let sum = 0;
        for (let j = 0; j < T; j++) {
          let s = 0;
          for (let c = 0; c < dh; c++) {
            s += dout[(b * T + i) * D + h * dh + c] * qkv[q(j, h, c) + 2 * D];
          }
          dP[j] = s;
          sum += P[row + j] * s;
        }
        for (let j = 0; j < T; j++) {
          const dS = P[row + j] * (dP[j] - sum) * scale;
          for (let c = 0; c < dh; c++) {
            dqkv[q(i, h, c)] += dS * qkv[q(j, h, c) + D];
            dqkv[q(j, h, c) + D] += dS * qkv[q(i, h, c)];
            dqkv[q(j, h, c) + 2 * D] += P[row + j] * dout[(b * T + i) * D + h * dh + c];
          }
        }
      }
    }
  }
  return dqkv;
}
