/**
 * Optimizer ops over flat buffers (`FlatBuffer.all()`): the global gradient norm and one fused
 * AdamW step with gradient-norm clipping, optionally fused with the EMA update. Per-step scalars
 * live in a uniform buffer the trainer rewrites each step. Mixed precision adds the loss-scaled
 * step (`adamwAmpStep`: unscale, skip on overflow, write the f16 weight copy) and the dynamic
 * loss scale's update (`lossScaleUpdate`), both reading the GPU-resident scaler state `amp`.
 * A skip mask (`skipMask`) leaves the elements another optimizer updates (Muon's) alone.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import { sumSquares } from "./reduce.ts";
import source from "../../shaders/optim.wgsl" with { type: "text" };

const [base, ampSection] = source.split(/^\/\/ @section amp.*$/m);
const code = shader(base);
let ampCode: string | undefined;
function amp(k: Kernels, name: string): string {
  if (!k.gpu.features.has("shader-f16")) {
    throw new Error(`${name}: mixed precision needs the adapter feature shader-f16`);
  }
  ampCode ??= shader("enable f16;\n" + base + ampSection);
  return ampCode;
}

/**
 * Fields of the loss scaler's state tensor `amp` [AMP_FIELDS] (f32, on the GPU): the scale S of
 * the next step, good steps since S last changed, skipped steps in total, and of the last step:
 * skipped (1/0), its unscaled gradient norm, the S it used.
 */
export const AMP = {
  scale: 0,
  good: 1,
  skipped: 2,
  lastSkipped: 3,
  lastNorm: 4,
  lastScale: 5,
} as const;
export const AMP_FIELDS = 8;

/** Dynamic loss scaling settings (PyTorch GradScaler's, with its defaults). */
export interface LossScaling {
  /** Good steps in a row before the scale doubles (default 2000). */
  interval?: number;
  growth?: number;
  backoff?: number;
}

/** The initial scaler state for scale S (and counters from a resumed run). */
export function ampState(
  s: { scale: number; good?: number; skipped?: number },
): Float32Array<ArrayBuffer> {
  const a = new Float32Array(AMP_FIELDS);
  a[AMP.scale] = s.scale;
  a[AMP.good] = s.good ?? 0;
  a[AMP.skipped] = s.skipped ?? 0;
  a[AMP.lastScale] = s.scale;
  return a;
}

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

/** The settings training options name (the seed's field names), at `step` with rate `lr`. */
export function adamwSettings(
  o: { beta1: number; beta2: number; eps: number; weight_decay: number; grad_clip: number },
  lr: number,
  step: number,
  emaDecay?: number,
): AdamwHyper {
  const { beta1, beta2, eps } = o;
  return {
    lr,
    beta1,
    beta2,
    eps,
    weightDecay: o.weight_decay,
    step,
    maxNorm: o.grad_clip,
    emaDecay,
  };
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
    Math.log(h.beta1),
    Math.log(h.beta2),
  );
}

/** Queue a write of this step's scalars into `buf` (ordered before the next submit). */
export function writeAdamwHyper(k: Kernels, buf: GPUBuffer, h: AdamwHyper): void {
  k.device.queue.writeBuffer(buf, 0, adamwHyperValues(h));
}

/**
 * A bit per element of an n-element flat tensor, set in the element ranges [start, end) given:
 * the AdamW steps leave those elements (params, moments, EMA, f16 copy) alone.
 */
export function skipMask(n: number, ranges: [number, number][] = []): Uint32Array<ArrayBuffer> {
  const words = new Uint32Array(Math.max(1, Math.ceil(n / 32)));
  for (const [start, end] of ranges) {
    if (!(0 <= start && start <= end && end <= n)) {
      throw new Error(`skipMask: range [${start}, ${end}) outside [0, ${n})`);
    }
    for (let i = start; i < end; i++) words[i >>> 5] |= 1 << (i & 31);
  }
  return words;
}

/** The mask tensor of `skipMask(n, ranges)`, uploaded. */
export function skipMaskTensor(k: Kernels, n: number, ranges: [number, number][] = []): Tensor {
  const words = skipMask(n, ranges);
  const t = k.tensor([words.length], "adamw skip mask");
  k.write(t, words);
  return t;
}

function checkMask(name: string, n: number, skip: Tensor): void {
  if (skip.length !== Math.max(1, Math.ceil(n / 32))) {
    throw new Error(`${name}: the skip mask has ${skip.length} words for ${n} elements`);
  }
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
 * What a plain trainer runs after its backward: the global gradient norm into `norm` ([1]), then
 * one AdamW step clipped by it (adamwStep, no EMA). Two dispatches.
 */
export function clippedAdamw(
  k: Kernels,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  norm: Tensor,
  hyper: GPUBuffer,
): Dispatch[] {
  return [...gradNormForward(k, grads, norm), ...adamwStep(k, params, grads, m, v, norm, hyper)];
}

/**
 * One AdamW step over whole flat buffers, in one dispatch: g = grads·min(1, maxNorm/(norm+1e-6))
 * (no clipping when maxNorm ≤ 0; `norm` is gradNormForward's [1] output), then PyTorch AdamW:
 * p ← p·(1 − lr·wd); m ← β1·m + (1−β1)·g; v ← β2·v + (1−β2)·g²;
 * p ← p − (lr/bc1)·m/(sqrt(v)/sqrt(bc2) + eps). With `ema`, also ema ← d·ema + (1−d)·p.
 * `grads` is only read (not scaled in place). Elements set in `opts.skip` (a `skipMaskTensor`)
 * are left alone.
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
  opts: { skip?: Tensor } = {},
): Dispatch[] {
  const n = sameLength("adamw", params, grads, m, v, ...(ema ? [ema] : []));
  const skip = opts.skip ?? skipMaskTensor(k, n);
  checkMask("adamw", n, skip);
  const bindings = [k.uniform([n, 0, 0]), hyper, grads, norm, skip, params, m, v];
  return [
    ema
      ? k.dispatch(code, "adamw_ema", [...bindings, ema], groupsFor(n))
      : k.dispatch(code, "adamw", bindings, groupsFor(n)),
  ];
}

/**
 * The loss-scaled AdamW step (mixed precision), in one dispatch over whole flat buffers: `grads`
 * hold the gradients of S·loss (S = amp[scale]) and `norm` their norm. Unless that norm is
 * inf/NaN (then nothing is written: the step is skipped), g = grads/S clipped by the unscaled
 * norm, then AdamW as `adamwStep` with the bias corrections of Adam's own step count (the step
 * number minus amp[skipped]), the EMA update, and params16 = f16(params). Elements set in
 * `opts.skip` are left alone.
 */
export function adamwAmpStep(
  k: Kernels,
  params: Tensor,
  grads: Tensor,
  m: Tensor,
  v: Tensor,
  ema: Tensor,
  params16: Tensor,
  norm: Tensor,
  ampState: Tensor,
  hyper: GPUBuffer,
  opts: { skip?: Tensor } = {},
): Dispatch[] {
  const n = sameLength("adamwAmp", params, grads, m, v, ema, params16);
  const skip = opts.skip ?? skipMaskTensor(k, n);
  checkMask("adamwAmp", n, skip);
  if (params16.dtype !== "f16") throw new Error("adamwAmp: params16 must be an f16 tensor");
  if (ampState.length < AMP_FIELDS) throw new Error(`adamwAmp: amp must hold ${AMP_FIELDS} floats`);
  const c = amp(k, "adamwAmp");
  const bindings = [
    k.uniform([n, 0, 0]),
    hyper,
    grads,
    norm,
    ampState,
    skip,
    params,
    m,
    v,
    ema,
    params16,
  ];
  return [k.dispatch(c, "adamw_amp", bindings, groupsFor(n))];
}

/**
 * After `adamwAmpStep`: record the step in `amp` (skipped, unscaled norm, scale used) and update
 * the scale: ×backoff on a skip, ×growth after `interval` good steps in a row.
 */
export function lossScaleUpdate(
  k: Kernels,
  norm: Tensor,
  ampState: Tensor,
  s: LossScaling = {},
): Dispatch[] {
  const interval = s.interval ?? 2000;
  if (!Number.isInteger(interval) || interval < 1) {
    throw new Error(`lossScaleUpdate: interval must be an integer ≥ 1, got ${interval}`);
  }
  const u = k.uniform([interval, f32(s.growth ?? 2), f32(s.backoff ?? 0.5)]);
  return [k.dispatch(amp(k, "lossScaleUpdate"), "amp_update", [u, norm, ampState], 1)];
}
