/** Float64 reference of the k-NN kernels over inner products (src/ops/knn.ts). */
export type F64 = Float64Array;

/** Squared distance of query i to key j from their inner product and squared norms, ≥ 0. */
const dist2 = (dots: F64, kn: F64, qn: F64, b: number, j: number, i: number) =>
  Math.max(qn[i] + kn[j] - 2 * dots[j * b + i], 0);

/** out[i] = the kth smallest (0-based) squared distance of query i to the N keys. */
export function knnKth(dots: F64, keyNorm: F64, queryNorm: F64, kth: number): F64 {
  const N = keyNorm.length, b = queryNorm.length;
  return Float64Array.from({ length: b }, (_, i) => {
    const d = Array.from({ length: N }, (_, j) => dist2(dots, keyNorm, queryNorm, b, j, i));
    return d.sort((x, y) => x - y)[kth];
  });
}

/** out[i] = min over keys j of (squared distance − keyRadius[j]). */
export function knnCover(dots: F64, keyNorm: F64, queryNorm: F64, keyRadius: F64): F64 {
  const N = keyNorm.length, b = queryNorm.length;
  return Float64Array.from({ length: b }, (_, i) => {
    let m = Infinity;
    for (let j = 0; j < N; j++) {
      m = Math.min(m, dist2(dots, keyNorm, queryNorm, b, j, i) - keyRadius[j]);
    }
    return m;
  });
}
