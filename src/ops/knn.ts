/**
 * k-NN manifold kernels over a block of inner products (shaders/knn.wgsl): per query, the k-th
 * smallest squared distance to the keys, or the smallest margin d² − radius² over the keys. The
 * inner products come from `linearForward(keys [N, D], queries [b, D])` = [N, b].
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, shader } from "./common.ts";
import source from "../../shaders/knn.wgsl" with { type: "text" };

const code = shader(source);

/** Largest order statistic `knnKth` can take (its per-thread list length − 1). */
export const KNN_MAX_K = 15;

function check(name: string, dots: Tensor, keyNorm: Tensor, queryNorm: Tensor, out: Tensor) {
  const N = keyNorm.length, b = queryNorm.length;
  if (dots.length !== N * b) {
    throw new Error(`${name}: dots has ${dots.length} values, expected keys ${N} × queries ${b}`);
  }
  if (out.length !== b) throw new Error(`${name}: out has ${out.length} values, expected ${b}`);
  return [N, b];
}

/** out[i] = the k-th smallest (0-based) of max(|q_i|² + |k_j|² − 2 dots[j, i], 0) over keys j. */
export function knnKth(
  k: Kernels,
  dots: Tensor,
  keyNorm: Tensor,
  queryNorm: Tensor,
  out: Tensor,
  kth: number,
): Dispatch[] {
  const [N, b] = check("knnKth", dots, keyNorm, queryNorm, out);
  if (!(Number.isInteger(kth) && kth >= 0 && kth <= KNN_MAX_K && kth < N)) {
    throw new Error(`knnKth: order ${kth} must be an integer in 0..${Math.min(KNN_MAX_K, N - 1)}`);
  }
  const u = k.uniform([N, b, kth]);
  return [k.dispatch(code, "knn_kth", [u, dots, keyNorm, queryNorm, out], groupsFor(b))];
}

/** out[i] = min over keys j of (max(|q_i|² + |k_j|² − 2 dots[j, i], 0) − keyRadius[j]). */
export function knnCover(
  k: Kernels,
  dots: Tensor,
  keyNorm: Tensor,
  queryNorm: Tensor,
  keyRadius: Tensor,
  out: Tensor,
): Dispatch[] {
  const [N, b] = check("knnCover", dots, keyNorm, queryNorm, out);
  if (keyRadius.length !== N) throw new Error(`knnCover: keyRadius must have ${N} values`);
  const u = k.uniform([N, b, 0]);
  return [
    k.dispatch(code, "knn_cover", [u, dots, keyNorm, queryNorm, keyRadius, out], groupsFor(b)),
  ];
}
