/**
 * The optimizer step that follows the backward, recorded once and replayed every step: the global
 * gradient norm, then (optimizer "muon") Muon on the blocks' 2-D hidden matrices and AdamW on
 * every other trainable tensor, or AdamW on all of them, each clipping by that norm, with the EMA.
 * Mixed precision adds the dynamic loss scaler (as PyTorch AMP + GradScaler): the gradients are
 * those of S·loss; the steps unscale them, skip the update when their norm is inf/NaN, write the
 * f16 weight copy; the scale then halves on a skip or doubles after `loss_scale_window` good
 * steps. See src/train/trainer.ts for what a skipped step does to the schedules.
 *
 * Muon's momentum buffers live in Adam's first-moment buffer `m`, at their matrices' slots (`v`
 * stays zero there): checkpoints name them `opt.momentum_buffer.*` (src/io/model_io.ts).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "../model/config.ts";
import { type Model, trainableView } from "../model/model.ts";
import {
  adamwAmpStep,
  adamwHyper,
  adamwSettings,
  adamwStep,
  AMP,
  AMP_FIELDS,
  ampState,
  gradNormForward,
  lossScaleUpdate,
  skipMaskTensor,
  writeAdamwHyper,
} from "../ops/optim.ts";
import { muonHyper, type MuonMatrix, muonStep, writeMuonHyper } from "../ops/muon.ts";
import type { TrainOptions } from "./options.ts";
import { emaDecayAt, learningRate } from "./schedule.ts";

/** The dynamic loss scaler's state (mixed precision). */
export interface LossScaleState {
  /** The loss scale S of the next step. */
  scale: number;
  /** Good steps since S last changed. */
  good: number;
  /** Steps skipped so far (Adam's step count is `step − skipped`). */
  skipped: number;
}

/**
 * The matrices Muon updates: each block's attention qkv (one matrix [3D, D]) and proj, and MLP
 * fc1 and fc2 weights (rows = PyTorch's out features). Embeddings, biases, adaLN modulations and
 * the final layer stay with AdamW.
 */
export function muonParamNames(cfg: DiTConfig): string[] {
  return Array.from(
    { length: cfg.depth },
    (_, i) => ["attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"].map((n) => `blocks.${i}.${n}.weight`),
  ).flat();
}

export class Optimizer {
  /** Adam's moments (and Muon's momentum buffers in `m`). */
  readonly m: FlatBuffer;
  readonly v: FlatBuffer;
  /** The global gradient norm of the last step (of the scaled gradients in mixed precision). */
  readonly gnorm: Tensor;
  /** Mixed precision: the loss scaler's state (AMP fields of src/ops/optim.ts). */
  readonly amp?: Tensor;
  readonly dispatches: Dispatch[];
  /** The tensors Muon updates (empty with AdamW alone). */
  readonly muonNames: string[];
  private hyper: GPUBuffer;
  private muonHyper?: GPUBuffer;

  constructor(
    readonly k: Kernels,
    model: Model,
    ema: Model,
    grads: FlatBuffer,
    readonly opts: TrainOptions,
  ) {
    const { cfg, layout } = model;
    this.m = new FlatBuffer(k.device, layout, "adam.m");
    this.v = new FlatBuffer(k.device, layout, "adam.v");
    this.gnorm = k.tensor([1], "grad_norm");
    this.hyper = adamwHyper(k);
    const tv = (b: FlatBuffer) => trainableView(cfg, layout, b);
    const start = tv(this.m).offset / 4;
    this.muonNames = opts.optimizer === "muon" ? muonParamNames(cfg) : [];
    const slots = this.muonNames.map((name) => layout.get(name));
    const skip = skipMaskTensor(
      k,
      tv(this.m).length,
      slots.map((s) => [s.offset - start, s.offset - start + s.length]),
    );
    const amp = model.precision === "f16" ? k.tensor([AMP_FIELDS], "loss scaler") : undefined;
    if (amp) {
      this.amp = amp;
      k.write(amp, ampState({ scale: opts.loss_scale }));
    }
    let muon: Dispatch[] = [];
    if (slots.length) {
      this.muonHyper = muonHyper(k);
      const matrices: MuonMatrix[] = slots.map((s) => ({
        name: s.name,
        rows: s.shape[0],
        cols: s.shape[1],
        params: model.params.view(s.name),
        grads: grads.view(s.name),
        momentum: this.m.view(s.name),
        ema: ema.params.view(s.name),
        params16: model.params16?.view(s.name),
      }));
      muon = muonStep(k, matrices, this.gnorm, this.muonHyper, amp);
    }
    const norm = gradNormForward(k, tv(grads), this.gnorm);
    const [p, g, m, v, e] = [model.params, grads, this.m, this.v, ema.params].map(tv);
    this.dispatches = amp
      ? [
        ...norm,
        ...muon, // reads the scale before lossScaleUpdate changes it
        ...adamwAmpStep(k, p, g, m, v, e, tv(model.params16!), this.gnorm, amp, this.hyper, {
          skip,
        }),
        ...lossScaleUpdate(k, this.gnorm, amp, { interval: opts.loss_scale_window }),
      ]
      : [...norm, ...muon, ...adamwStep(k, p, g, m, v, this.gnorm, this.hyper, e, { skip })];
  }

  /** The loss scale S as a [1] tensor (mixed precision: the loss gradient's multiplier). */
  get lossScale(): Tensor | undefined {
    return this.amp && { ...this.amp, length: 1, shape: [1] };
  }

  /** Step `step`'s learning rates: AdamW's (`lr`) and Muon's, scaled alike by the schedule. */
  learningRates(step: number): { lr: number; muonLr: number } {
    const lr = learningRate(this.opts, step);
    return { lr, muonLr: this.opts.muon_lr * (lr / this.opts.lr) };
  }

  /** Queue the per-step scalars of `step` (1-based; ordered before the step's submit). */
  writeHyper(step: number): void {
    const o = this.opts, { lr, muonLr } = this.learningRates(step);
    const emaDecay = emaDecayAt(o, step);
    writeAdamwHyper(this.k, this.hyper, adamwSettings(o, lr, step, emaDecay));
    if (this.muonHyper) {
      writeMuonHyper(this.k, this.muonHyper, {
        lr: muonLr,
        momentum: o.muon_momentum,
        weightDecay: o.weight_decay,
        maxNorm: o.grad_clip,
        emaDecay,
      });
    }
  }

  /** The loss scaler's state (mixed precision; waits for the submitted steps). */
  async lossScaleState(): Promise<LossScaleState | undefined> {
    if (!this.amp) return undefined;
    const a = await this.k.read(this.amp);
    return { scale: a[AMP.scale], good: a[AMP.good], skipped: a[AMP.skipped] };
  }

  /** Restore the moments and the loss scaler (an f32 run's state starts at the initial scale). */
  restore(m: Float32Array, v: Float32Array, lossScale?: LossScaleState): void {
    this.k.write(this.m.all(), m);
    this.k.write(this.v.all(), v);
    if (this.amp) this.k.write(this.amp, ampState(lossScale ?? { scale: this.opts.loss_scale }));
  }
}
