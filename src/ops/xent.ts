/**
 * Softmax cross-entropy (PyTorch `F.cross_entropy`, mean reduction) of logits [B, C] against u32
 * labels [B], forward and backward: the loss of a classifier trained with this engine.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { groupsFor, shader } from "./common.ts";
import source from "../../shaders/xent.wgsl" with { type: "text" };

const code = shader(source);

function shape(name: string, logits: Tensor, labels: Tensor): [number, number] {
  const B = labels.length;
  const C = logits.shape[logits.shape.length - 1];
  if (!(B >= 1) || logits.length !== B * C) {
    throw new Error(`${name}: logits [${logits.shape}] do not hold ${B} rows (one per label)`);
  }
  return [B, C];
}

/**
 * loss [1] = mean over rows of (logsumexp(logits[r]) − logits[r, labels[r]]). Per-row losses go
 * to a scratch tensor (allocated here) and are summed in a fixed order by one workgroup.
 */
export function xentForward(k: Kernels, logits: Tensor, labels: Tensor, loss: Tensor): Dispatch[] {
  const [B, C] = shape("xent", logits, labels);
  if (loss.length !== 1) throw new Error("xent: loss must have one element");
  const rows = k.tensor([B], "xent row losses");
  const u = k.uniform([B, C, f32(1 / B)]);
  return [
    k.dispatch(code, "xent_fwd_rows", [u, logits, labels, rows], groupsFor(B)),
    k.dispatch(code, "xent_fwd_mean", [u, rows, loss], 1),
  ];
}

/** dlogits = dloss[0]·(softmax(logits) − onehot(labels))/B (written, not accumulated). */
export function xentBackward(
  k: Kernels,
  logits: Tensor,
  labels: Tensor,
  dloss: Tensor,
  dlogits: Tensor,
): Dispatch[] {
  const [B, C] = shape("xent backward", logits, labels);
  if (dlogits.length !== logits.length) throw new Error("xent backward: dlogits size differs");
  if (dloss.length !== 1) throw new Error("xent backward: dloss must have one element");
  const u = k.uniform([B, C, f32(1 / B)]);
  return [k.dispatch(code, "xent_bwd", [u, logits, labels, dloss, dlogits], groupsFor(B))];
}
