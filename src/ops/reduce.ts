/**
 * Deterministic reductions: column sums (bias gradients) and the global sum of squares. Scratch
 * for the two-stage forms is allocated when the dispatches are recorded.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import code from "../../shaders/reduce.wgsl" with { type: "text" };

/**
 * A fixed split of n elements for a two-stage sum: `parts` workgroups of 256 threads, each
 * summing `chunk` consecutive elements (a multiple of 256); parts ≤ 1024.
 */
export function reductionPlan(n: number): { chunk: number; parts: number } {
  const chunk = 256 * Math.max(1, Math.ceil(n / (256 * 1024)));
  return { chunk, parts: Math.max(1, Math.ceil(n / chunk)) };
}

/** Above this many rows, column sums go through per-chunk partial sums. */
export const COLSUM_DIRECT_ROWS = 64;

/** Rows per chunk of a two-stage column sum over M rows (fixed by M alone). */
export function colsumRows(M: number): number {
  return Math.max(16, Math.ceil(Math.sqrt(M)));
}

/**
 * out [N] (=, or += with `accumulate`) Σ_m x[m, :] for x [M, N] (N = out.length). M ≤ 64: one
 * thread per column looping over the rows in order; larger M: chunks of ~√M rows summed in order
 * into a [chunks, N] scratch, then those summed in order.
 */
export function columnSum(
  k: Kernels,
  x: Tensor,
  out: Tensor,
  opts: { accumulate?: boolean } = {},
): Dispatch[] {
  const N = out.length, M = x.length / N;
  if (!Number.isInteger(M)) throw new Error(`columnSum: ${x.length} elements are not [M, ${N}]`);
  const acc = opts.accumulate ? 1 : 0;
  const final = (src: Tensor, m: number) =>
    k.dispatch(code, "colsum_final", [src, k.uniform([m, N, 0, 0, acc]), out], Math.ceil(N / 256));
  if (M <= COLSUM_DIRECT_ROWS) return [final(x, M)];
  const rows = colsumRows(M), parts = Math.ceil(M / rows);
  const partial = k.tensor([parts, N], "column sum partials");
  return [
    k.dispatch(
      code,
      "colsum_partial",
      [x, k.uniform([M, N, rows, parts, 0]), partial],
      Math.ceil(parts * N / 256),
    ),
    final(partial, parts),
  ];
}

/** out [1] = Σ x² by a fixed two-stage tree (partial sums scratch allocated here). */
export function sumSquares(
  k: Kernels,
  x: Tensor,
  out: Tensor,
  opts: { sqrt?: boolean } = {},
): Dispatch[] {
  const name = opts.sqrt ? "norm" : "sumSquares";
  if (out.length !== 1) throw new Error(`${name}: out must have one element`);
  const n = x.length;
  const { chunk, parts } = reductionPlan(n);
  const partial = k.tensor([parts], "sum of squares partials");
  const u = k.uniform([0, n, chunk, parts, opts.sqrt ? 1 : 0]);
  return [
    k.dispatch(code, "sumsq_partial", [x, u, partial], parts),
    k.dispatch(code, "sumsq_final", [partial, u, out], 1),
  ];
}
