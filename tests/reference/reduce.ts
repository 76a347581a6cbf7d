/** Float64 reference of the reduction family. */
export type F64 = Float64Array;

/** [Σ x²]. */
export function sumSquares(x: F64): F64 {
  let s = 0;
  for (const v of x) s += v * v;
  return Float64Array.of(s);
}
