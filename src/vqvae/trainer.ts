/**
 * The VQ-VAE training step: forward → reconstruction MSE (+ β·commitment) → backward (the
 * straight-through estimator) → global-norm clip → AdamW → the codebook's EMA update with
 * dead-code restarts, recorded once and submitted once per step. Metrics (reconstruction and
 * commitment losses, perplexity, codes used, gradient norm) are copied into a ring on the GPU
 * and read back late, never awaited inside the loop. Web-standard: files are the caller's.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import { QueuePacer } from "../gpu/pacing.ts";
import { mseBackward, mseForward } from "../ops/loss.ts";
import { adamwHyper, adamwSettings, clippedAdamw, writeAdamwHyper } from "../ops/optim.ts";
import { Batcher, type BatcherState, type Dataset } from "../data/dataset.ts";
import { type RngState, SeededRng } from "../rng.ts";
import type { VQVAEConfig } from "./config.ts";
import { initParams, initState, paramLayout, stateLayout } from "./params.ts";
import { VQVAEGraph } from "./vqvae.ts";
import type { VqvaeTrainOptions } from "./options.ts";
import { learningRate } from "../train/schedule.ts";
import { MetricsRing } from "../train/metrics_ring.ts";

/** What, besides the flat buffers, a resumed run needs to continue bit-identically. */
export interface VqvaeTrainerState {
  step: number;
  batcher: BatcherState;
  /** The restart-row RNG. */
  rng: RngState;
}

export interface VqvaeStepMetrics {
  step: number;
  /** mean((recon − x)²) on images in [-1, 1]. */
  reconLoss: number;
  /** mean((z_e − z_q)²); the loss adds β times it. */
  commitLoss: number;
  /** exp(entropy) of this batch's code usage. */
  perplexity: number;
  /** Codes used by this batch. */
  codesUsed: number;
  gradNorm: number;
  lr: number;
}

/** The flat buffers of a run: weights, Adam moments, quantizer state. */
export interface VqvaeBuffers {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  state: Float32Array;
}

export class VqvaeTrainer {
  readonly params: FlatBuffer;
  readonly grads: FlatBuffer;
  readonly m: FlatBuffer;
  readonly v: FlatBuffer;
  readonly state: FlatBuffer;
  readonly graph: VQVAEGraph;
  readonly batcher: Batcher;
  readonly B: number;
  step = 0;
  private rng: SeededRng;
  private rand: Tensor;
  private dRecon: Tensor;
  private reconLoss: Tensor;
  private commitLoss: Tensor;
  private vqMetrics: Tensor;
  private gnorm: Tensor;
  private hyper: GPUBuffer;
  private dispatches: Dispatch[];
  private metrics: MetricsRing<VqvaeStepMetrics>;
  private pacer: QueuePacer;

  constructor(
    readonly k: Kernels,
    readonly cfg: VQVAEConfig,
    readonly opts: VqvaeTrainOptions,
    readonly dataset: Dataset,
  ) {
    this.B = opts.batch_size;
    this.pacer = new QueuePacer(k.device);
    const pl = paramLayout(cfg);
    this.params = new FlatBuffer(k.device, pl, "vqvae params");
    this.grads = new FlatBuffer(k.device, pl, "vqvae grads");
    this.m = new FlatBuffer(k.device, pl, "adam.m");
    this.v = new FlatBuffer(k.device, pl, "adam.v");
    this.state = new FlatBuffer(k.device, stateLayout(cfg), "quantizer state");
    k.write(this.params.all(), initParams(cfg, opts.seed));
    k.write(this.state.all(), initState(cfg, opts.seed));
    this.batcher = new Batcher(dataset, {
      seed: opts.seed,
      flip: opts.hflip ?? false,
      shift: opts.shift ?? 0,
    });
    this.rng = new SeededRng(opts.seed ^ 0x7e57a27);

    const g = this.graph = new VQVAEGraph(k, cfg, this.params, this.state, this.B);
    this.rand = k.tensor([cfg.codebook_size], "restart rows");
    this.dRecon = k.tensor(g.recon.shape, "dRecon");
    this.reconLoss = k.tensor([1], "recon loss");
    this.commitLoss = k.tensor([1], "commit loss");
    this.vqMetrics = k.tensor([2], "perplexity, codes used");
    this.gnorm = k.tensor([1], "grad norm");
    this.hyper = adamwHyper(k);
    // Per step: recon loss, commit loss, perplexity, codes used, gradient norm.
    this.metrics = new MetricsRing(k, 5, Math.max(1, opts.log_every), (step, d, lr) => ({
      step,
      reconLoss: d[0],
      commitLoss: d[1],
      perplexity: d[2],
      codesUsed: d[3],
      gradNorm: d[4],
      lr,
    }));
    this.dispatches = [
      ...g.forward(),
      ...mseForward(k, g.recon, g.x, this.reconLoss),
      ...mseForward(k, g.encoder.ze, g.quantizer.zq, this.commitLoss),
      ...mseBackward(k, g.recon, g.x, this.dRecon),
      ...g.backward(this.dRecon, this.grads),
      ...clippedAdamw(
        k,
        this.params.all(),
        this.grads.all(),
        this.m.all(),
        this.v.all(),
        this.gnorm,
        this.hyper,
      ),
      ...g.update(this.rand, this.vqMetrics),
    ];
  }

  get dispatchCount(): number {
    return this.dispatches.length;
  }

  /** The dispatches of one step (for timing). */
  get stepDispatches(): Dispatch[] {
    return this.dispatches;
  }

  /** Upload the next batch and this step's restart rows. */
  private upload(): void {
    const batch = this.batcher.next(this.B);
    this.k.write(this.graph.x, batch.images);
    const rows = this.graph.quantizer.rows;
    const r = new Uint32Array(this.cfg.codebook_size);
    for (let i = 0; i < r.length; i++) r[i] = this.rng.int(rows);
    this.k.write(this.rand, r);
  }

  /** One training step: submitted, not awaited (up to STEPS_PER_WAIT steps run ahead). */
  async trainStep(): Promise<void> {
    const step = this.step + 1;
    const o = this.opts;
    const lr = learningRate(o, step);
    this.upload();
    writeAdamwHyper(this.k, this.hyper, adamwSettings(o, lr, step));
    const enc = this.k.device.createCommandEncoder();
    this.k.encode(enc, this.dispatches);
    this.metrics.record(enc, step, lr, [
      this.reconLoss,
      this.commitLoss,
      this.vqMetrics,
      this.gnorm,
    ]);
    this.k.device.queue.submit([enc.finish()]);
    this.step = step;
    await this.pacer.submitted();
    if (step % this.metrics.size === 0) this.metrics.request(step);
  }

  /** Metrics that have arrived since the last call (non-blocking). */
  takeMetrics(): VqvaeStepMetrics[] {
    return this.metrics.take();
  }

  /** Wait for every submitted step and return all metrics not yet taken. */
  flushMetrics(): Promise<VqvaeStepMetrics[]> {
    return this.metrics.flush(this.step);
  }

  trainerState(): VqvaeTrainerState {
    return { step: this.step, batcher: this.batcher.state(), rng: this.rng.state() };
  }

  async buffers(): Promise<VqvaeBuffers> {
    const [params, m, v, state] = await Promise.all(
      [this.params, this.m, this.v, this.state].map((b) => this.k.read(b.all())),
    );
    return { params, m, v, state };
  }

  restore(b: VqvaeBuffers, s: VqvaeTrainerState): void {
    this.k.write(this.params.all(), b.params);
    this.k.write(this.m.all(), b.m);
    this.k.write(this.v.all(), b.v);
    this.k.write(this.state.all(), b.state);
    this.step = s.step;
    this.metrics.restart(s.step);
    this.batcher.restore(s.batcher);
    this.rng.setState(s.rng);
  }
}
