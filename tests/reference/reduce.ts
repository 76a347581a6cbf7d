/** Float64 reference of the reduction family. */
export type F64 = Float64Array;

/** out [N] = Σ_m x[m, :]. */
export function columnSum(x: F64, M: number, N: number): F64 {
  const out = new Float64Array(N);
  for (let m = 0; m < M; m++) for (let n = 0; n < N; n++) out[n] += x[m * N + n];
  return out;
}

/** [Σ x²]. */
export function sumSquares(x: F64): F64 {
  let s = 0;
  for (const v of x) s += v * v;
  return Float64Array.of(s);
}
