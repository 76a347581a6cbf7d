/**
 * Flow-matching loss ops: the interpolant x_t and velocity target that src/flow/path.ts defines
 * (`interpolate`), mean((pred − target)²) by a deterministic two-stage reduction, and its
 * gradient.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import { sumSquaredDifferences } from "./reduce.ts";
import source from "../../shaders/loss.wgsl" with { type: "text" };

const code = shader(source);

/**
 * loss [1] = scale·mean((pred − target)²), summed in a fixed order (reduce.ts); `accumulate`:
 * loss += (a micro-batch's share of a batch's mean, scale = its fraction of the batch).
 */
export function mseForward(
  k: Kernels,
  pred: Tensor,
  target: Tensor,
  loss: Tensor,
  opts: { scale?: number; accumulate?: boolean } = {},
): Dispatch[] {
  const n = sameLength("mse", pred, target);
  return sumSquaredDifferences(k, pred, target, loss, (opts.scale ?? 1) / n, opts.accumulate);
}

/**
 * dpred = scale·dloss[0]·2(pred − target)/N (written). `dloss` is the upstream gradient of the
 * loss scalar as a [1] tensor; without it the upstream gradient is `scale` alone (default 1).
 */
export function mseBackward(
  k: Kernels,
  pred: Tensor,
  target: Tensor,
  dpred: Tensor,
  scale = 1,
  dloss?: Tensor,
): Dispatch[] {
  const n = sameLength("mse backward", pred, target, dpred);
  if (!dloss) {
    dloss = k.tensor([1], "mse upstream 1");
    k.write(dloss, new Float32Array([1]));
  }
  const u = k.uniform([n, 0, f32(2 * scale / n)]);
  return [k.dispatch(code, "mse_bwd", [u, pred, target, dloss, dpred], groupsFor(n))];
}

/**
 * The flow-matching pair of src/flow/path.ts `interpolate`: xt = (1 − t[b])·x0 + t[b]·x1 and
 * target = x1 − x0, with x1 (data) and x0 (noise) [B, …] and t [B] broadcast over each sample.
 */
export function flowTargetForward(
  k: Kernels,
  x1: Tensor,
  x0: Tensor,
  t: Tensor,
  xt: Tensor,
  target: Tensor,
): Dispatch[] {
  const n = sameLength("flowTarget", x1, x0, xt, target);
  const B = t.length, per = n / B;
  if (!Number.isInteger(per)) throw new Error(`flowTarget: ${n} elements over ${B} samples`);
  const u = k.uniform([n, per, f32(0)]);
  return [k.dispatch(code, "flow_target", [u, x1, x0, t, xt, target], groupsFor(n))];
}
