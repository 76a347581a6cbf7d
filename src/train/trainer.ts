/**
 * The training step: flow-matching inputs → DiT forward → MSE → backward → global-norm clip →
 * AdamW + EMA, all recorded once and submitted once per step. Metrics (loss, grad norm) are
 * copied into a ring on the GPU and read back late, never awaited inside the loop.
 * Web-standard: file I/O (checkpoints, PNGs) is the caller's (tasks/train.ts).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "../model/config.ts";
import { Model, trainableView } from "../model/model.ts";
import type { DiTGraph } from "../model/dit.ts";
import { flowTargetForward, mseBackward, mseForward } from "../ops/loss.ts";
import { adamwHyper, adamwStep, gradNormForward, writeAdamwHyper } from "../ops/optim.ts";
import { Batcher, type BatcherState, type Dataset } from "../data/dataset.ts";
import { FlowPath, type PathState } from "../flow/path.ts";
import { emaDecayAt, learningRate, type TrainOptions } from "./options.ts";
import { MetricsRing } from "./metrics_ring.ts";

/** What, besides the four flat buffers, a resumed run needs to continue bit-identically. */
export interface TrainerState {
  step: number;
  batcher: BatcherState;
  path: PathState;
}

/** One step's metrics. */
export interface StepMetrics {
  step: number;
  loss: number;
  gradNorm: number;
  lr: number;
}

export class Trainer {
  readonly k: Kernels;
  readonly cfg: DiTConfig;
  /** The EMA of the model's weights (what sample grids and checkpoints' `ema.*` use). */
  readonly ema: Model;
  readonly grads: FlatBuffer;
  readonly m: FlatBuffer;
  readonly v: FlatBuffer;
  readonly batcher: Batcher;
  readonly path: FlowPath;
  readonly B: number;
  /** Steps completed (submitted). */
  step = 0;
  private graph: DiTGraph;
  private x1: Tensor;
  private x0: Tensor;
  private target: Tensor;
  private dOut: Tensor;
  private loss: Tensor;
  private gnorm: Tensor;
  private hyper: GPUBuffer;
  private dispatches: Dispatch[];
  private metrics: MetricsRing<StepMetrics>;
  private inflight: Promise<void>[] = [];

  /**
   * Train `model` (raw weights, e.g. `createModel(cfg, { seed })`) on `dataset`; the EMA starts
   * as a copy of the model's weights. Images are flipped horizontally only with `opts.hflip`.
   */
  constructor(
    /** The trained model (raw weights). */
    readonly model: Model,
    readonly opts: TrainOptions,
    readonly dataset: Dataset,
  ) {
    const k = this.k = model.k, cfg = this.cfg = model.cfg;
    if (model.kind !== "raw") throw new Error("trainer: train a model of raw weights, not EMA");
    this.B = opts.batch_size;
    const layout = model.layout;
    this.grads = new FlatBuffer(k.device, layout, "grads");
    this.m = new FlatBuffer(k.device, layout, "adam.m");
    this.v = new FlatBuffer(k.device, layout, "adam.v");
    this.ema = new Model(k, cfg, { kind: "ema", decoder: model.decoder });
    const enc = k.device.createCommandEncoder();
    enc.copyBufferToBuffer(model.params.buffer, 0, this.ema.params.buffer, 0, layout.total * 4);
    k.device.queue.submit([enc.finish()]);
    this.batcher = new Batcher(dataset, { seed: opts.seed, flip: opts.hflip ?? false });
    this.path = new FlowPath(opts.seed ^ 0x51f15e, {
      numClasses: cfg.num_classes,
      labelDropout: cfg.num_classes > 0 ? opts.label_dropout : 0,
      timeSampling: opts.time_sampling === "logit-normal"
        ? { kind: "logit-normal", mean: opts.logit_mean, std: opts.logit_std }
        : { kind: "uniform" },
    });

    const graph = this.graph = model.graph(this.B);
    const img = [this.B, cfg.in_channels, cfg.image_size, cfg.image_size];
    this.x1 = k.tensor(img, "x1");
    this.x0 = k.tensor(img, "x0");
    this.target = k.tensor(img, "target");
    this.dOut = k.tensor(img, "dOut");
    this.loss = k.tensor([1], "loss");
    this.gnorm = k.tensor([1], "grad_norm");
    this.hyper = adamwHyper(k);
    this.metrics = new MetricsRing(
      k,
      2,
      Math.max(1, opts.log_every),
      (step, d, lr) => ({ step, loss: d[0], gradNorm: d[1], lr }),
    );
    const tv = (b: FlatBuffer) => trainableView(cfg, layout, b);
    this.dispatches = [
      ...flowTargetForward(k, this.x1, this.x0, graph.t, graph.x, this.target),
      ...graph.forward(),
      ...mseForward(k, graph.out, this.target, this.loss),
      ...mseBackward(k, graph.out, this.target, this.dOut),
      ...graph.backward(this.dOut, this.grads),
      ...gradNormForward(k, tv(this.grads), this.gnorm),
      ...adamwStep(
        k,
        tv(model.params),
        tv(this.grads),
        tv(this.m),
        tv(this.v),
        this.gnorm,
        this.hyper,
        tv(this.ema.params),
      ),
    ];
  }

  /** Number of recorded dispatches in one step. */
  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** Draw the next batch and its flow-matching randomness, and upload them. */
  private upload(): void {
    const per = this.cfg.in_channels * this.cfg.image_size ** 2;
    const batch = this.batcher.next(this.B);
    const draw = this.path.sample(batch.labels, per);
    this.k.write(this.x1, batch.images);
    this.k.write(this.x0, draw.noise);
    this.k.write(this.graph.t, draw.t);
    this.k.write(this.graph.y, Uint32Array.from(draw.labels));
  }

  /** The dispatches of one step (for per-kernel timing). */
  get stepDispatches(): Dispatch[] {
    return this.dispatches;
  }

  /**
   * Run one training step: upload its data, submit, and return without waiting for the GPU (at
   * most two earlier steps are left in flight).
   */
  async trainStep(): Promise<void> {
    const step = this.step + 1;
    const lr = learningRate(this.opts, step);
    this.upload();
    writeAdamwHyper(this.k, this.hyper, {
      lr,
      beta1: this.opts.beta1,
      beta2: this.opts.beta2,
      eps: this.opts.eps,
      weightDecay: this.opts.weight_decay,
      step,
      maxNorm: this.opts.grad_clip,
      emaDecay: emaDecayAt(this.opts, step),
    });
    const enc = this.k.device.createCommandEncoder();
    this.k.encode(enc, this.dispatches);
    this.metrics.record(enc, step, lr, [this.loss, this.gnorm]);
    this.k.device.queue.submit([enc.finish()]);
    this.step = step;
    this.inflight.push(this.k.device.queue.onSubmittedWorkDone());
    while (this.inflight.length > 2) await this.inflight.shift();
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

  /** The state a resume needs besides the flat buffers. */
  state(): TrainerState {
    return { step: this.step, batcher: this.batcher.state(), path: this.path.state() };
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

  /** Restore a saved run: flat buffers and trainer state. */
  restore(
    bufs: { params: Float32Array; ema: Float32Array; m: Float32Array; v: Float32Array },
    state: TrainerState,
  ): void {
    this.k.write(this.model.params.all(), bufs.params);
    this.k.write(this.ema.params.all(), bufs.ema);
    this.k.write(this.m.all(), bufs.m);
    this.k.write(this.v.all(), bufs.v);
    this.step = state.step;
    this.metrics.restart(state.step);
    this.batcher.restore(state.batcher);
    this.path.restore(state.path);
  }
}
