/**
 * Flow-matching loss ops: the interpolant x_t and velocity target, mean((pred − target)²) by a
 * deterministic two-stage reduction, and its gradient.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { f32 } from "../gpu/kernels.ts";
import code from "../../shaders/loss.wgsl" with { type: "text" };
import { reductionPlan } from "./reduce.ts";

function same(name: string, ...ts: Tensor[]): number {
  const n = ts[0].length;
  for (const t of ts) if (t.length !== n) throw new Error(`${name}: tensor lengths differ`);
  return n;
}

/**
 * loss [1] = mean((pred − target)²): per-workgroup partial sums (a scratch tensor allocated
 * here), then one workgroup sums them; both stages in a fixed order.
 */
export function mseForward(k: Kernels, pred: Tensor, target: Tensor, loss: Tensor): Dispatch[] {
  const n = same("mse", pred, target);
  if (loss.length !== 1) throw new Error("mse: loss must have one element");
  const { chunk, parts } = reductionPlan(n);
  const partial = k.tensor([parts], "mse partial sums");
  return [
    k.dispatch(
      code,
      "mse_partial",
      [pred, target, k.uniform([n, chunk, parts, f32(0)]), partial],
      parts,
    ),
    k.dispatch(code, "mse_final", [partial, loss, k.uniform([n, chunk, parts, f32(1 / n)])], 1),
  ];
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
): Dispatch {
  const n = same("mse backward", pred, target, dpred);
  if (!dloss) {
    dloss = k.tensor([1], "mse upstream 1");
    k.write(dloss, new Float32Array([1]));
  }
  return k.dispatch(
    code,
    "mse_bwd",
    [pred, target, k.uniform([n, 0, 0, f32(2 * scale / n)]), dpred, dloss],
    Math.ceil(n / 256),
  );
}

/**
 * xt = (1 − t[b])·x0 + t[b]·x1 and target = x1 − x0, with x1 (data) and x0 (noise) [B, …] and
 * t [B] broadcast over each sample's elements.
 */
export function flowTargetForward(
  k: Kernels,
  x1: Tensor,
  x0: Tensor,
  t: Tensor,
  xt: Tensor,
  target: Tensor,
): Dispatch {
  const n = same("flowTarget", x1, x0, xt, target);
  const B = t.length, per = n / B;
  if (!Number.isInteger(per)) throw new Error(`flowTarget: ${n} elements over ${B} samples`);
  return k.dispatch(
    code,
    "flow_target",
    [x1, x0, k.uniform([n, per, 0, f32(0)]), xt, t, target],
    Math.ceil(n / 256),
  );
}
