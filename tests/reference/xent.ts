/** Float64 reference of softmax cross-entropy (mean over rows) and its gradient. */
export type F64 = Float64Array;

function logSumExp(x: F64, base: number, C: number): number {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, x[base + c]);
  let s = 0;
  for (let c = 0; c < C; c++) s += Math.exp(x[base + c] - m);
  return m + Math.log(s);
}

/** [mean_r (logsumexp(logits[r]) − logits[r, labels[r]])] for logits [B, C]. */
export function xent(logits: F64, labels: F64): F64 {
  const B = labels.length, C = logits.length / B;
  let s = 0;
  for (let r = 0; r < B; r++) s += logSumExp(logits, r * C, C) - logits[r * C + labels[r]];
  return Float64Array.of(s / B);
}

/** dlogits = dloss·(softmax − onehot)/B. */
export function xentBackward(logits: F64, labels: F64, dloss: number): F64 {
  const B = labels.length, C = logits.length / B;
  const out = new Float64Array(logits.length);
  for (let r = 0; r < B; r++) {
    const lse = logSumExp(logits, r * C, C);
    for (let c = 0; c < C; c++) {
      const p = Math.exp(logits[r * C + c] - lse);
      out[r * C + c] = dloss * (p - (c === labels[r] ? 1 : 0)) / B;
    }
  }
  return out;
}
