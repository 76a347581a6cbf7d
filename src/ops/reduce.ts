/**
 * Deterministic reductions to one number (shaders/reduce.wgsl): the sum of squares (the global
 * gradient norm) and the sum of squared differences (the MSE loss), each as fixed per-workgroup
 * partial sums (scratch allocated when recorded) summed in order by one workgroup.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { sameLength, shader, WORKGROUP_SIZE } from "./common.ts";
import source from "../../shaders/reduce.wgsl" with { type: "text" };

const squares = shader(source, { TERM: "a[i] * a[i]", OUT: "y" });
const squaredDiffs = shader(source, { TERM: "(a[i] - b[i]) * (a[i] - b[i])", OUT: "y_after_b" });

/**
 * A fixed split of n elements for a two-stage sum: `parts` workgroups, each summing `chunk`
 * consecutive elements (a multiple of the workgroup size); parts ≤ 1024.
 */
export function reductionPlan(n: number): { chunk: number; parts: number } {
  const chunk = WORKGROUP_SIZE * Math.max(1, Math.ceil(n / (WORKGROUP_SIZE * 1024)));
  return { chunk, parts: Math.max(1, Math.ceil(n / chunk)) };
}

/**
 * out [1] = scale·Σ term, or sqrt(Σ term) with `root` (`accumulate`: out +=); `ins` are the
 * term's operands.
 */
function reduce(
  k: Kernels,
  code: string,
  ins: Tensor[],
  out: Tensor,
  opts: { root?: boolean; scale?: number; accumulate?: boolean },
  name: string,
): Dispatch[] {
  if (out.length !== 1) throw new Error(`${name}: out must have one element`);
  const n = sameLength(name, ...ins);
  const { chunk, parts } = reductionPlan(n);
  const partial = k.tensor([parts], `${name} partial sums`);
  const u = k.uniform([
    n,
    chunk,
    parts,
    opts.root ? 1 : 0,
    f32(opts.scale ?? 1),
    opts.accumulate ? 1 : 0,
  ]);
  return [
    k.dispatch(code, "partial_sum", [u, ...ins, partial], parts),
    k.dispatch(code, "final_sum", [u, partial, out], 1),
  ];
}

/** out [1] = Σ x², or its square root with `sqrt` (the global gradient norm). */
export function sumSquares(
  k: Kernels,
  x: Tensor,
  out: Tensor,
  opts: { sqrt?: boolean } = {},
): Dispatch[] {
  return reduce(k, squares, [x], out, { root: opts.sqrt }, opts.sqrt ? "norm" : "sumSquares");
}

/** out [1] = scale·Σ (a − b)² (the MSE loss with scale 1/n); `accumulate`: out +=. */
export function sumSquaredDifferences(
  k: Kernels,
  a: Tensor,
  b: Tensor,
  out: Tensor,
  scale = 1,
  accumulate = false,
): Dispatch[] {
  return reduce(k, squaredDiffs, [a, b], out, { scale, accumulate }, "sumSquaredDifferences");
}
