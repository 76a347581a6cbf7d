/**
 * The loss and gradient half of a training step over micro-batches (gradient accumulation): a
 * batch of B images drawn at once (data order, noise, t and label dropout from the same random
 * streams as an undivided batch) runs as B/M passes of M images through one graph of batch M.
 * Each pass forms the flow-matching pair, runs the forward, adds its share (M/B) of the batch's
 * mean loss into `loss`, and backpropagates (M/B)·its mean's gradient, written into the gradients
 * by the first pass and added by the others: the accumulated gradient is the batch's mean
 * gradient up to summation order. With M = B it is the plain step.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import type { DiTGraph, GraphInputs } from "../model/dit.ts";
import { flowTargetForward, mseBackward, mseForward } from "../ops/loss.ts";

/** A drawn batch: images x1, noise x0 [B, C, H, W], times [B], labels after dropout [B]. */
export interface BatchData {
  images: Float32Array;
  noise: Float32Array;
  t: Float32Array;
  labels: Uint32Array;
}

/** One micro-batch's input tensors (data, noise, and the graph's t and y). */
interface Slice extends GraphInputs {
  x1: Tensor;
  x0: Tensor;
}

export class MicroBatches {
  /** The batch's mean loss [1] after the step's passes. */
  readonly loss: Tensor;
  readonly dispatches: Dispatch[];
  private slices: Slice[];

  /**
   * `graph` of batch M (M divides B); `grads` receives the batch's gradient; `lossScale`: the
   * loss gradient's multiplier S as a [1] tensor (mixed precision), else 1.
   */
  constructor(
    readonly k: Kernels,
    readonly graph: DiTGraph,
    readonly B: number,
    grads: FlatBuffer,
    lossScale?: Tensor,
  ) {
    const M = graph.B;
    if (!(M >= 1 && B % M === 0)) {
      throw new Error(`micro-batches: ${M} images a pass do not divide a batch of ${B}`);
    }
    const shape = graph.x.shape;
    this.slices = Array.from({ length: B / M }, (_, j) => {
      const own = (s: number[], name: string) => k.tensor(s, `${name} (micro-batch ${j})`);
      return j === 0
        ? { x1: own(shape, "x1"), x0: own(shape, "x0"), t: graph.t, y: graph.y }
        : { x1: own(shape, "x1"), x0: own(shape, "x0"), t: own([M], "t"), y: own([M], "y") };
    });
    const target = k.tensor(shape, "target"), dOut = k.tensor(shape, "dOut");
    this.loss = k.tensor([1], "loss");
    const share = M / B;
    this.dispatches = this.slices.flatMap((s, j) => [
      ...flowTargetForward(k, s.x1, s.x0, s.t, graph.x, target),
      ...graph.forward(j === 0 ? undefined : s),
      ...mseForward(k, graph.out, target, this.loss, { scale: share, accumulate: j > 0 }),
      ...mseBackward(k, graph.out, target, dOut, share, lossScale),
      ...graph.backward(dOut, grads, { accumulate: j > 0, inputs: s }),
    ]);
  }

  /** Number of passes a step makes (B/M). */
  get passes(): number {
    return this.slices.length;
  }

  /** Queue the uploads of a drawn batch (ordered after the steps already submitted). */
  upload(d: BatchData): void {
    const M = this.graph.B, per = d.images.length / this.B;
    this.slices.forEach((s, j) => {
      const a = j * M, b = a + M;
      this.k.write(s.x1, d.images.subarray(a * per, b * per));
      this.k.write(s.x0, d.noise.subarray(a * per, b * per));
      this.k.write(s.t, d.t.subarray(a, b));
      this.k.write(s.y, d.labels.subarray(a, b));
    });
  }
}
