/** Float64 reference of the linear layer: y = x·wᵀ + b, and its gradients. Plain loops. */
export type F64 = Float64Array;

/** y[m,n] = Σ_k x[m,k]·w[n,k] + b[n]; x [M,K], w [N,K], b [N] or null. */
export function linear(x: F64, w: F64, b: F64 | null, M: number, N: number, K: number): F64 {
  const y = new Float64Array(M * N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      let s = b ? b[n] : 0;
      for (let k = 0; k < K; k++) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s;
    }
  }
  return y;
}

/** dx = dy·w, dw = dyᵀ·x, db = Σ_m dy[m,:]. */
export function linearBackward(
  x: F64,
  w: F64,
  dy: F64,
  M: number,
  N: number,
  K: number,
): { dx: F64; dw: F64; db: F64 } {
  const dx = new Float64Array(M * K), dw = new Float64Array(N * K), db = new Float64Array(N);
  for (let m = 0; m < M; m++) {
    for (let n = 0; n < N; n++) {
      const g = dy[m * N + n];
      db[n] += g;
      for (let k = 0; k < K; k++) {
        dx[m * K + k] += g * w[n * K + k];
        dw[n * K + k] += g * x[m * K + k];
      }
    }
  }
  return { dx, dw, db };
}
