/**
 * The training step: flow-matching inputs → DiT forward → MSE → backward (over micro-batches with
 * `micro_batch_size`, accumulating the gradients; recomputing each block's activations with
 * `grad_checkpointing`) → global-norm clip → AdamW (and Muon with optimizer "muon") + EMA, all
 * recorded once and submitted once per step. Metrics (loss, grad norm) are copied into a ring on
 * the GPU and read back late, never awaited inside the loop. The next step's batch and noise are
 * drawn on the host while the GPU runs this one.
 *
 * Mixed precision (a model of precision "f16", as PyTorch AMP + GradScaler): f32 master weights,
 * gradients, Adam moments and EMA; the model's f16 weight copy is written by the optimizer step.
 * The loss gradient is scaled by S (dynamic loss scaling, S on the GPU); the step unscales the f32
 * weight gradients before clipping and the update. When their norm is inf/NaN (an f16 overflow in
 * the backward) the update is skipped: params, moments and EMA are left as they were, while the
 * step counter, the data, the learning-rate and EMA-decay schedules advance (a PyTorch loop calls
 * scheduler.step() every iteration); Adam's bias corrections count only applied updates (PyTorch's
 * per-parameter step). S halves on a skip and doubles after `loss_scale_window` good steps; S,
 * its counter and the number of skips are part of the trainer state (exact resume), and every
 * step's metrics say whether it was skipped and the S it used (src/train/optimizer.ts).
 * Web-standard: file I/O (checkpoints, PNGs) is the caller's (tasks/train.ts).
 */
import type { Dispatch, Kernels } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import { QueuePacer } from "../gpu/pacing.ts";
import type { DiTConfig } from "../model/config.ts";
import { Model, type Precision } from "../model/model.ts";
import { AMP } from "../ops/optim.ts";
import { Batcher, type BatcherState, type Dataset } from "../data/dataset.ts";
import { FlowPath, type PathState } from "../flow/path.ts";
import { type TrainOptions, trainOptionsProblem } from "./options.ts";
import { MetricsRing } from "./metrics_ring.ts";
import { type LossScaleState, Optimizer } from "./optimizer.ts";
import { type BatchData, MicroBatches } from "./micro_batch.ts";

export type { LossScaleState } from "./optimizer.ts";

/** What, besides the four flat buffers, a resumed run needs to continue bit-identically. */
export interface TrainerState {
  step: number;
  batcher: BatcherState;
  path: PathState;
  /** Mixed precision only. */
  lossScale?: LossScaleState;
}

/** One step's metrics. */
export interface StepMetrics {
  step: number;
  loss: number;
  /** The global gradient norm (of the unscaled gradients; inf/NaN on a skipped step). */
  gradNorm: number;
  lr: number;
  /** Mixed precision: the loss scale this step used, and whether its update was skipped. */
  lossScale?: number;
  skipped?: boolean;
}

/** A drawn batch with the draw state before it (what a checkpoint taken now must hold). */
interface Drawn extends BatchData {
  batcher: BatcherState;
  path: PathState;
}

export class Trainer {
  readonly k: Kernels;
  readonly cfg: DiTConfig;
  readonly precision: Precision;
  /** The EMA of the model's weights (what sample grids and checkpoints' `ema.*` use). */
  readonly ema: Model;
  readonly grads: FlatBuffer;
  readonly optimizer: Optimizer;
  readonly batcher: Batcher;
  readonly path: FlowPath;
  /** Images per step, and per forward/backward pass (B/M passes a step). */
  readonly B: number;
  readonly M: number;
  /** Steps completed (submitted). */
  step = 0;
  private batches: MicroBatches;
  private dispatches: Dispatch[];
  private metrics: MetricsRing<StepMetrics>;
  private readonly pacer: QueuePacer;
  private next?: Drawn;
  private host = { ms: 0, submitMs: 0, steps: 0 };

  /**
   * Train `model` (raw weights, e.g. `createModel(cfg, { seed, precision })`) on `dataset` in the
   * model's precision; the EMA starts as a copy of the model's weights. Images are flipped
   * horizontally only with `opts.hflip`. Every buffer the run needs is allocated here.
   */
  constructor(
    /** The trained model (raw weights). */
    readonly model: Model,
    readonly opts: TrainOptions,
    readonly dataset: Dataset,
  ) {
    const k = this.k = model.k, cfg = this.cfg = model.cfg;
    this.pacer = new QueuePacer(k.device);
    if (model.kind !== "raw") throw new Error("trainer: train a model of raw weights, not EMA");
    const precision = this.precision = model.precision;
    if (opts.precision !== undefined && opts.precision !== precision) {
      throw new Error(
        `trainer: options ask for precision ${opts.precision} but the model is ${precision} ` +
          `(create the model with { precision: "${opts.precision}" })`,
      );
    }
    const problem = trainOptionsProblem(opts);
    if (problem) throw new Error(`trainer: ${problem}`);
    this.B = opts.batch_size;
    this.M = opts.micro_batch_size ?? this.B;
    const layout = model.layout;
    this.grads = new FlatBuffer(k.device, layout, "grads");
    this.ema = new Model(k, cfg, { kind: "ema", precision, decoder: model.decoder });
    const enc = k.device.createCommandEncoder();
    enc.copyBufferToBuffer(model.params.buffer, 0, this.ema.params.buffer, 0, layout.total * 4);
    k.device.queue.submit([enc.finish()]);
    this.ema.weightsChanged();
    this.batcher = new Batcher(dataset, { seed: opts.seed, flip: opts.hflip ?? false });
    this.path = new FlowPath(opts.seed ^ 0x51f15e, {
      numClasses: cfg.num_classes,
      labelDropout: cfg.num_classes > 0 ? opts.label_dropout : 0,
      timeSampling: opts.time_sampling === "logit-normal"
        ? { kind: "logit-normal", mean: opts.logit_mean, std: opts.logit_std }
        : { kind: "uniform" },
    });

    const optimizer = this.optimizer = new Optimizer(k, model, this.ema, this.grads, opts);
    const graph = model.graph(this.M, { recompute: opts.grad_checkpointing ?? false });
    this.batches = new MicroBatches(k, graph, this.B, this.grads, optimizer.lossScale);
    this.dispatches = [...this.batches.dispatches, ...optimizer.dispatches];
    // Ring fields: loss, grad norm; mixed precision: loss, skipped, grad norm, loss scale.
    const log = Math.max(1, opts.log_every);
    this.metrics = optimizer.amp
      ? new MetricsRing(k, 4, log, (step, d, lr) => ({
        step,
        loss: d[0],
        gradNorm: d[2],
        lr,
        lossScale: d[3],
        skipped: d[1] !== 0,
      }))
      : new MetricsRing(k, 2, log, (step, d, lr) => ({ step, loss: d[0], gradNorm: d[1], lr }));
  }

  /** Adam's first moments (and Muon's momentum buffers at its matrices). */
  get m(): FlatBuffer {
    return this.optimizer.m;
  }

  /** Adam's second moments. */
  get v(): FlatBuffer {
    return this.optimizer.v;
  }

  /** Number of recorded dispatches in one step. */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** The dispatches of one step (for per-kernel timing). */
  get stepDispatches(): Dispatch[] {
    return this.dispatches;
  }

  /**
   * Host milliseconds per step in `trainStep`, averaged over the steps so far: `work` drawing the
   * batch, uploading and encoding; `submit` in queue.submit (which a software adapter makes wait
   * for the GPU); waits for the GPU excluded.
   */
  get hostMsPerStep(): { work: number; submit: number } {
    const n = this.host.steps;
    return { work: n ? this.host.ms / n : NaN, submit: n ? this.host.submitMs / n : NaN };
  }

  /** Draw the next batch and its flow-matching randomness (host only). */
  private draw(): Drawn {
    const before = { batcher: this.batcher.state(), path: this.path.state() };
    const per = this.cfg.in_channels * this.cfg.image_size ** 2;
    const batch = this.batcher.next(this.B);
    const d = this.path.sample(batch.labels, per);
    return {
      ...before,
      images: batch.images,
      noise: d.noise,
      t: d.t,
      labels: Uint32Array.from(d.labels),
    };
  }

  /**
   * Run one training step: upload its data (drawn while the previous step ran), submit, draw the
   * next step's data, and return without waiting for the GPU (every STEPS_PER_WAIT steps of
   * src/gpu/pacing.ts it waits for the queue to empty, which bounds the steps in flight). Uploads
   * are queue-ordered after the steps already submitted, so one set of input tensors serves every
   * step.
   */
  async trainStep(): Promise<void> {
    const t0 = performance.now();
    const step = this.step + 1;
    const { lr } = this.optimizer.learningRates(step);
    const d = this.next ?? this.draw();
    this.next = undefined;
    this.batches.upload(d);
    this.optimizer.writeHyper(step);
    const enc = this.k.device.createCommandEncoder();
    this.k.encode(enc, this.dispatches);
    const amp = this.optimizer.amp, loss = this.batches.loss;
    if (amp) {
      // skipped, unscaled norm, scale used
      this.metrics.record(enc, step, lr, [loss, { tensor: amp, first: AMP.lastSkipped, count: 3 }]);
    } else this.metrics.record(enc, step, lr, [loss, this.optimizer.gnorm]);
    const cmd = enc.finish();
    const t1 = performance.now();
    this.k.device.queue.submit([cmd]);
    const t2 = performance.now();
    this.step = step;
    this.ema.weightsChanged();
    this.next = this.draw(); // while the GPU runs this step
    this.host.ms += t1 - t0 + performance.now() - t2;
    this.host.submitMs += t2 - t1;
    this.host.steps++;
    await this.pacer.submitted();
    if (step % this.metrics.size === 0) this.metrics.request(step);
  }

  /** Start reading back the metrics of the steps since the last request (not awaited). */
  requestMetrics(): void {
    this.metrics.request(this.step);
  }

  /** Metrics that have arrived since the last call (non-blocking). */
  takeMetrics(): StepMetrics[] {
    return this.metrics.take();
  }

  /** Wait for every submitted step and return all metrics not yet taken. */
  flushMetrics(): Promise<StepMetrics[]> {
    return this.metrics.flush(this.step);
  }

  /** The state a resume needs besides the flat buffers (waits for submitted steps in f16). */
  async state(): Promise<TrainerState> {
    const drawn = this.next ?? { batcher: this.batcher.state(), path: this.path.state() };
    const s: TrainerState = { step: this.step, batcher: drawn.batcher, path: drawn.path };
    const lossScale = await this.optimizer.lossScaleState();
    if (lossScale) s.lossScale = lossScale;
    return s;
  }

  /** Read the four flat buffers (params, EMA, Adam m and v). */
  async buffers(): Promise<
    { params: Float32Array; ema: Float32Array; m: Float32Array; v: Float32Array }
  > {
    const [params, ema, m, v] = await Promise.all(
      [this.model.params, this.ema.params, this.m, this.v].map((b) => this.k.read(b.all())),
    );
    return { params, ema, m, v };
  }

  /**
   * Restore a saved run: flat buffers and trainer state (an f32 run's state, without a loss
   * scale, resumes in f16 with the initial scale).
   */
  restore(
    bufs: { params: Float32Array; ema: Float32Array; m: Float32Array; v: Float32Array },
    state: TrainerState,
  ): void {
    this.model.setWeights(bufs.params);
    this.ema.setWeights(bufs.ema);
    this.optimizer.restore(bufs.m, bufs.v, state.lossScale);
    this.step = state.step;
    this.metrics.restart(state.step);
    this.batcher.restore(state.batcher);
    this.path.restore(state.path);
    this.next = undefined;
  }
}
