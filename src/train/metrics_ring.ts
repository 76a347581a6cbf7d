/**
 * Per-step metrics without waiting on the GPU inside a training loop: each step's scalars (loss,
 * gradient norm, …) are copied on the GPU into a ring of `size` slots, and the ring is read back
 * late, every `size` steps or on a flush; rows come out in step order. Web-standard.
 */
import type { Kernels, Tensor } from "../gpu/kernels.ts";

interface Pending {
  from: number;
  to: number;
  data?: Float32Array;
  promise: Promise<void>;
}

/** A tensor of 4-byte values, or `count` of its values from index `first`. */
export type MetricSource = Tensor | { tensor: Tensor; first: number; count: number };

export class MetricsRing<M> {
  private ring: Tensor;
  private lrs = new Map<number, number>();
  private pending: Pending[] = [];
  private requested = 0;
  private ready: M[] = [];

  /**
   * `fields` scalars a step; `row` turns a step's scalars (and the learning rate recorded with
   * them) into a metrics row.
   */
  constructor(
    private readonly k: Kernels,
    private readonly fields: number,
    readonly size: number,
    private readonly row: (step: number, values: Float32Array, lr: number) => M,
  ) {
    this.ring = k.tensor([size * fields], "metrics");
  }

  /** Encode copies of `sources` (their values in order fill the step's fields) into its slot. */
  record(enc: GPUCommandEncoder, step: number, lr: number, sources: MetricSource[]): void {
    this.lrs.set(step, lr);
    let at = this.ring.offset + ((step - 1) % this.size) * this.fields * 4;
    for (const s of sources) {
      const { tensor: t, first, count } = "tensor" in s
        ? s
        : { tensor: s, first: 0, count: s.length };
      enc.copyBufferToBuffer(t.buffer, t.offset + first * 4, this.ring.buffer, at, count * 4);
      at += count * 4;
    }
  }

  /** Start reading back the rows of the steps after the last request up to `step` (not awaited). */
  request(step: number): void {
    const from = this.requested + 1;
    if (from > step) return;
    const p: Pending = { from, to: step, promise: Promise.resolve() };
    p.promise = this.k.read(this.ring).then((d) => {
      p.data = d;
    });
    this.pending.push(p);
    this.requested = step;
  }

  /** Rows that have arrived since the last call (non-blocking). */
  take(): M[] {
    while (this.pending.length && this.pending[0].data) {
      const p = this.pending.shift()!;
      for (let s = p.from; s <= p.to; s++) {
        const o = ((s - 1) % this.size) * this.fields;
        this.ready.push(this.row(s, p.data!.subarray(o, o + this.fields), this.lrs.get(s) ?? NaN));
        this.lrs.delete(s);
      }
    }
    const r = this.ready;
    this.ready = [];
    return r;
  }

  /** Wait for every step up to `step` and return all rows not yet taken. */
  async flush(step: number): Promise<M[]> {
    this.request(step);
    await Promise.all(this.pending.map((p) => p.promise));
    return this.take();
  }

  /** Continue after `step` (a restored run): earlier steps are not read back. */
  restart(step: number): void {
    this.requested = step;
  }
}
