/**
 * Training the feature classifier with this engine: minibatches of (image, label) → MLP forward →
 * cross-entropy → backward → AdamW (one dispatch over the flat buffer), recorded once and
 * submitted once per step; cosine learning-rate decay after a short warmup. Web-standard only.
 */
import type { Dispatch, Kernels } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import { QueuePacer } from "../gpu/pacing.ts";
import { adamwHyper, clippedAdamw, writeAdamwHyper } from "../ops/optim.ts";
import { shuffle } from "../data/dataset.ts";
import { SeededRng } from "../rng.ts";
import { ClassifierGraph, classifierLayout, initClassifier } from "./classifier.ts";

export interface ClassifierTrainOptions {
  widths: readonly number[];
  batch: number;
  epochs: number;
  lr: number;
  weightDecay: number;
  /** Linear warmup steps before the cosine decay to 0. */
  warmup: number;
  seed: number;
}

export const CLASSIFIER_DEFAULTS: Omit<ClassifierTrainOptions, "widths"> = {
  batch: 250,
  epochs: 12,
  lr: 1e-3,
  weightDecay: 1e-4,
  warmup: 100,
  seed: 0,
};

/** Warmup, then cosine decay from lr to 0 at `total` steps. */
export function classifierLr(o: ClassifierTrainOptions, step: number, total: number): number {
  if (step <= o.warmup) return o.lr * step / Math.max(1, o.warmup);
  const p = Math.min(1, (step - o.warmup) / Math.max(1, total - o.warmup));
  return 0.5 * o.lr * (1 + Math.cos(Math.PI * p));
}

/** Images [N, D] in [-1, 1] and labels [N]. */
export interface LabelledSet {
  images: Float32Array;
  labels: Uint8Array | Int32Array | Uint32Array;
}

export class ClassifierTrainer {
  readonly params: FlatBuffer;
  readonly grads: FlatBuffer;
  private m: FlatBuffer;
  private v: FlatBuffer;
  private norm;
  private hyper: GPUBuffer;
  readonly graph: ClassifierGraph;
  private step_: Dispatch[];
  private rng: SeededRng;
  step = 0;
  private pacer: QueuePacer;

  constructor(readonly k: Kernels, readonly o: ClassifierTrainOptions, init?: Float32Array) {
    const layout = classifierLayout(o.widths);
    this.pacer = new QueuePacer(k.device);
    this.params = new FlatBuffer(k.device, layout, "clf.params");
    this.grads = new FlatBuffer(k.device, layout, "clf.grads");
    this.m = new FlatBuffer(k.device, layout, "clf.m");
    this.v = new FlatBuffer(k.device, layout, "clf.v");
    k.write(this.params.all(), init ?? initClassifier(o.widths, o.seed));
    this.norm = k.tensor([1], "clf.gradnorm");
    this.hyper = adamwHyper(k);
    this.graph = new ClassifierGraph(k, o.widths, this.params, o.batch);
    this.step_ = [
      ...this.graph.forward(),
      ...this.graph.lossAndBackward(this.grads),
      ...clippedAdamw(
        k,
        this.params.all(),
        this.grads.all(),
        this.m.all(),
        this.v.all(),
        this.norm,
        this.hyper,
      ),
    ];
    this.rng = new SeededRng(o.seed ^ 0xda7a);
  }

  /** Steps in `epochs` passes over n examples (the last partial batch of each epoch dropped). */
  totalSteps(n: number): number {
    return Math.floor(n / this.o.batch) * this.o.epochs;
  }

  /**
   * One epoch over `data` in a seeded random order; `onStep` after each submitted step (not
   * awaited by the GPU). Returns the loss of the epoch's last step.
   */
  async epoch(
    data: LabelledSet,
    total: number,
    onStep?: (step: number) => void | Promise<void>,
  ): Promise<number> {
    const D = this.o.widths[0], B = this.o.batch;
    const N = data.labels.length;
    const order = shuffle(Uint32Array.from({ length: N }, (_, i) => i), this.rng);
    const x = new Float32Array(B * D), y = new Uint32Array(B);
    for (let s = 0; s + B <= N; s += B) {
      for (let i = 0; i < B; i++) {
        const j = order[s + i];
        x.set(data.images.subarray(j * D, (j + 1) * D), i * D);
        y[i] = data.labels[j];
      }
      this.step += 1;
      this.k.write(this.graph.x, x);
      this.k.write(this.graph.labels, y);
      writeAdamwHyper(this.k, this.hyper, {
        lr: classifierLr(this.o, this.step, total),
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weightDecay: this.o.weightDecay,
        step: this.step,
      });
      this.k.submit(this.step_);
      await this.pacer.submitted();
      await onStep?.(this.step);
    }
    return (await this.k.read(this.graph.loss))[0];
  }

  /** The current weights. */
  weights(): Promise<Float32Array> {
    return this.k.read(this.params.all());
  }
}
