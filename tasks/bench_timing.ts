/**
 * Timing shared by the benchmarks (`deno task bench`, tasks/attention_bench.ts,
 * tasks/matmul_bench.ts): GPU time of passes by timestamp queries (wall clock where the adapter
 * has none), the median of batches of back-to-back repeats, the linear kernel's TFLOP/s at the
 * model's shapes, and the benchmarks' fast pseudo-random inputs.
 */
import type { Dispatch, Kernels, Tensor } from "../mod.ts";
// The kernels themselves: what only a benchmark needs, not part of the library's API.
import { linearBackwardInput, linearBackwardWeight, linearForward } from "../src/ops/linear.ts";

export const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** GPU time (ms) of encoding `dispatches` `reps` times in one pass, by timestamp queries. */
export class Timer {
  private qs?: GPUQuerySet;
  private resolve?: GPUBuffer;
  private read?: GPUBuffer;
  readonly timestamps: boolean;
  constructor(readonly k: Kernels, readonly slots = 4096) {
    this.timestamps = k.gpu.features.has("timestamp-query");
    if (this.timestamps) {
      this.qs = k.device.createQuerySet({ type: "timestamp", count: slots });
      this.resolve = k.device.createBuffer({
        size: slots * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      this.read = k.device.createBuffer({
        size: slots * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
    }
  }

  /** Milliseconds of each pass in `passes` (each a list of dispatches, encoded `reps` times). */
  async passes(passes: Dispatch[][], reps = 1): Promise<number[]> {
    const { device } = this.k;
    if (!this.timestamps) {
      const out: number[] = [];
      for (const p of passes) {
        const t0 = performance.now();
        this.k.submit(Array.from({ length: reps }, () => p).flat());
        await device.queue.onSubmittedWorkDone();
        out.push(performance.now() - t0);
      }
      return out;
    }
    const out: number[] = [];
    for (let s = 0; s < passes.length; s += this.slots / 2) {
      const chunk = passes.slice(s, s + this.slots / 2);
      const enc = device.createCommandEncoder();
      chunk.forEach((p, i) => {
        this.k.encode(enc, Array.from({ length: reps }, () => p).flat(), {
          querySet: this.qs!,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        });
      });
      enc.resolveQuerySet(this.qs!, 0, chunk.length * 2, this.resolve!, 0);
      enc.copyBufferToBuffer(this.resolve!, 0, this.read!, 0, chunk.length * 16);
      device.queue.submit([enc.finish()]);
      await this.read!.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(this.read!.getMappedRange().slice(0, chunk.length * 16));
      this.read!.unmap();
      for (let i = 0; i < chunk.length; i++) out.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    }
    return out;
  }
}

/**
 * Milliseconds per run of `ds` (compiled and warm): one estimate, then the median of 3 batches of
 * back-to-back repeats in one pass, each lasting >= `batchMs` (at most `maxReps` repeats).
 */
export async function medianBatchMs(
  timer: Timer,
  ds: Dispatch[],
  batchMs: number,
  maxReps: number,
): Promise<number> {
  const est = (await timer.passes([ds], 1))[0];
  const reps = Math.max(2, Math.min(maxReps, Math.ceil(batchMs / Math.max(est, 1e-4))));
  const t: number[] = [];
  for (let i = 0; i < 3; i++) t.push((await timer.passes([ds], reps))[0] / reps);
  return t.sort((a, b) => a - b)[1];
}

/** n values uniform in [-scale/2, scale/2) from a 32-bit LCG (fast, for benchmark inputs). */
export function lcgValues(n: number, seed: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * scale;
  }
  return a;
}

export interface LinearShape {
  name: string;
  M: number;
  N: number;
  K: number;
  kind: "fwd" | "dX" | "dW";
}

/** The model's linear products for a batch: forward and both backward products of each layer. */
export function modelShapes(B: number, T: number, D: number, P: number): LinearShape[] {
  const M = B * T;
  const layers: [string, number, number, number][] = [
    ["qkv", M, 3 * D, D],
    ["proj", M, D, D],
    ["fc1", M, 4 * D, D],
    ["fc2", M, D, 4 * D],
    ["adaLN", B, 6 * D, D],
    ["final", M, P, D],
    ["patch", M, D, P],
  ];
  const out: LinearShape[] = [];
  for (const [name, m, n, k] of layers) {
    out.push({ name, M: m, N: n, K: k, kind: "fwd" });
    out.push({ name, M: m, N: k, K: n, kind: "dX" });
    out.push({ name, M: n, N: k, K: m, kind: "dW" });
  }
  return out;
}

export async function timeLinear(
  k: Kernels,
  timer: Timer,
  s: LinearShape,
  repeats: number,
): Promise<number> {
  // y[M,N] = x[M,K]·w[N,K]ᵀ (fwd); dX[M,N] = dY[M,K]·W[K,N] (dX); dW[M,N] = dYᵀ·X, dY [K,M], X [K,N] (dW)
  const rnd = (shape: number[]) => {
    const t = k.tensor(shape, "bench");
    const n = t.length, a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
    k.write(t, a);
    return t;
  };
  let ds: Dispatch[];
  const ts: Tensor[] = [];
  if (s.kind === "fwd") {
    const x = rnd([s.M, s.K]), w = rnd([s.N, s.K]), b = rnd([s.N]), y = k.tensor([s.M, s.N]);
    ts.push(x, w, b, y);
    ds = linearForward(k, x, w, b, y);
  } else if (s.kind === "dX") {
    const dy = rnd([s.M, s.K]), w = rnd([s.K, s.N]), dx = k.tensor([s.M, s.N]);
    ts.push(dy, w, dx);
    ds = linearBackwardInput(k, dy, w, dx);
  } else {
    const dy = rnd([s.K, s.M]),
      x = rnd([s.K, s.N]),
      dw = k.tensor([s.M, s.N]),
      db = k.tensor([s.M]);
    ts.push(dy, x, dw, db);
    ds = linearBackwardWeight(k, dy, x, dw, db);
  }
  const flops = 2 * s.M * s.N * s.K;
  // Enough back-to-back repetitions (≥ ~50 ms on an H100) that the clocks ramp up and stay up.
  const reps = Math.max(3, Math.min(500, Math.round(3e12 / flops)));
  await timer.passes([ds], reps); // warm up: compile, clocks
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) ms.push((await timer.passes([ds], reps))[0] / reps);
  for (const t of ts) t.buffer.destroy();
  return flops / (median(ms) / 1e3) / 1e12;
}

/**
 * Wall time (ms) of one training step: 3 warm-up steps, then the median over `repeats` of the
 * mean of `iters` back-to-back steps (each submitted without waiting, as training runs).
 */
export async function timeSteps(
  k: Kernels,
  step: () => Promise<void>,
  iters: number,
  repeats: number,
): Promise<number> {
  for (let i = 0; i < 3; i++) await step();
  await k.device.queue.onSubmittedWorkDone();
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) await step();
    await k.device.queue.onSubmittedWorkDone();
    ms.push((performance.now() - t0) / iters);
  }
  return median(ms);
}

/** GPU time per kernel label of `dispatches` (each in its own pass), largest first, and the sum. */
export async function kernelBreakdown(
  timer: Timer,
  dispatches: Dispatch[],
): Promise<{ rows: { kernel: string; calls: number; ms: number }[]; total: number }> {
  const per = await timer.passes(dispatches.map((d) => [d]));
  const byLabel = new Map<string, { ms: number; n: number }>();
  dispatches.forEach((d, i) => {
    const e = byLabel.get(d.label) ?? { ms: 0, n: 0 };
    e.ms += per[i];
    e.n++;
    byLabel.set(d.label, e);
  });
  const rows = [...byLabel.entries()].sort((a, b) => b[1].ms - a[1].ms)
    .map(([kernel, e]) => ({ kernel, calls: e.n, ms: e.ms }));
  return { rows, total: per.reduce((a, b) => a + b, 0) };
}
