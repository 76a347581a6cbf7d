/**
 * Optimizer ops over flat buffers (`FlatBuffer.all()`): the global gradient norm and one fused
 * AdamW step with gradient-norm clipping, optionally fused with the EMA update. Per-step scalars
 * live in a uniform buffer the trainer rewrites each step.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import { sumSquares } from "./reduce.ts";
import source from "../../shaders/optim.wgsl" with { type: "text" };

const code = shader(source);

/** Per-step optimizer settings (PyTorch AdamW + clip_grad_norm_ + EMA). */
export interface AdamwHyper {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  /** 1-based step number (the bias corrections use it). */
  step: number;
  /** Clip the global gradient norm to this; ≤ 0 disables clipping. Default 0. */
  maxNorm?: number;
  /** EMA decay d: ema = d·ema + (1 − d)·params. Default 0.9999. */
  emaDecay?: number;
}

/** Number of f32 fields of the hyper-parameter uniform (WGSL struct `Hyper`). */
const HYPER_FIELDS = 16;

/** The uniform buffer holding the per-step scalars (write it with `writeAdamwHyper`). */
export function adamwHyper(k: Kernels): GPUBuffer {
  return k.device.createBuffer({
    label: "adamw hyper",
    size: HYPER_FIELDS * 4,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
}

/** The uniform's contents for `h` (bias corrections and decay computed in float64). */
export function adamwHyperValues(h: AdamwHyper): Float32Array<ArrayBuffer> {
  if (!(h.step >= 1) || !Number.isInteger(h.step)) {
    throw new Error(`adamw: step must be an integer ≥ 1, got ${h.step}`);
  }
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  const emaDecay = h.emaDecay ?? 0.9999;
  return Float32Array.of(
    h.lr,
    h.beta1,
    h.beta2,
    h.eps,
    h.weightDecay,
    1 - h.lr * h.weightDecay,
    h.lr / bc1,
    Math.sqrt(bc2),
    h.maxNorm ?? 0,
    emaDecay,
    h.step,
    1 - h.beta1,
    1 - h.beta2,
    1 - emaDecay,
    0,
    0,
  );
}

/** Queue a write of this step's scalars into `buf` (ordered before the next submit). */
export function writeAdamwHyper(k: Kernels, buf: GPUBuffer, h: AdamwHyper): void {
  k.device.queue.writeBuffer(buf, 0, adamwHyperValues(h));
}

/**
 * normOut [1] = sqrt(Σ grads²) by a fixed two-stage tree (partial sums scratch allocated here).
 * Padding of a flat buffer must be zero (it is unless written).
 */
export function gradNormForward(k: Kernels, grads: Tensor, normOut: Tensor): Dispatch[] {
  if (normOut.length !== 1) throw new Error("gradNorm: normOut must have one element");
  return sumSquares(k, grads, normOut, { sqrt: true });
}

/**
 * One AdamW step over whole flat buffers, in one dispatch: g = grads·min(1, maxNorm/(norm+1e-6))
 * (no clipping when maxNorm ≤ 0; `norm` is gradNormForward's [1] output), then PyTorch AdamW:
 * p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * p ← p − (lr/bc1)·m/(sqrt(v)/sqrt(bc2) + eps). With `ema`, also ema ← d·ema + (1−d)·p.
 * `grads` is only read (not scaled in place).
 */
export function adamwStep(
  k: Kernels,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  norm: Tensor,
  hyper: GPUBuffer,
  ema?: Tensor,
): Dispatch[] {
  const n = sameLength("adamw", params, grads, m, v, ...(ema ? [ema] : []));
  const bindings = [k.uniform([n, 0, 0]), hyper, grads, norm, params, m, v];
  return [
    ema
      ? k.dispatch(code, "adamw_ema", [...bindings, ema], groupsFor(n))
      : k.dispatch(code, "adamw", bindings, groupsFor(n)),
  ];
}
