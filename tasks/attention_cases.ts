/**
 * What tasks/attention_bench.ts and its tile sweep (attention_sweep.ts) share: the shapes, the
 * buffers of one shape and precision, their inputs, timing per call, and the output check.
 */
import type { Dispatch, Kernels, Tensor } from "../src/gpu/kernels.ts";
import { lcgValues, medianBatchMs, type Timer } from "./bench_timing.ts";

export interface Shape {
  name: string;
  B: number;
  T: number;
  H: number;
  dh: number;
}

export const SHAPES: Record<string, Shape> = {
  S: { name: "DiT-S/2 28x28", B: 128, T: 196, H: 6, dh: 64 },
  B: { name: "DiT-B/2 32x32", B: 128, T: 256, H: 12, dh: 64 },
  t: { name: "smoke (CPU)", B: 2, T: 37, H: 2, dh: 16 }, // --shapes=t --ms=5 on a CPU adapter
};

/** The tensors of one forward and backward. */
export interface Bufs {
  qkv: Tensor;
  out: Tensor;
  aux: Tensor;
  dout: Tensor;
  dqkv: Tensor;
}

/** Inputs: variance ~1, like layer-normed activations. */
export const random = (n: number, seed: number): Float32Array => lcgValues(n, seed, 3.4);

export function tensor(
  k: Kernels,
  shape: number[],
  data: Float32Array | null,
  f16 = false,
): Tensor {
  const t = k.tensor(shape, "bench", f16 ? "f16" : undefined);
  if (data) k.write(t, data);
  return t;
}

/**
 * max |a − b| / max |b| over the first n elements of two tensors, or over the columns [c0, c1) of
 * rows of `cols[0]` elements when `cols` is given.
 */
export async function diff(
  k: Kernels,
  a: Tensor,
  b: Tensor,
  n: number,
  cols?: [number, number, number],
): Promise<number> {
  const view = (t: Tensor) => ({ ...t, length: n, shape: [n] });
  const [x, y] = [await k.read(view(a)), await k.read(view(b))];
  let e = 0, m = 0;
  for (let i = 0; i < n; i++) {
    const c = cols ? i % cols[0] : 0;
    if (cols && (c < cols[1] || c >= cols[2])) continue;
    e = Math.max(e, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  return Number.isFinite(e) ? e / m : Infinity;
}

/** Milliseconds per call of `ds` (compiled and run once first; median of 3 batches of >= `ms`). */
export async function time(k: Kernels, timer: Timer, ds: Dispatch[], ms: number): Promise<number> {
  await k.run(ds); // compile, warm up, surface errors
  return await medianBatchMs(timer, ds, ms, 2000);
}

export const fmt = (v: number, d = 3) => v.toFixed(d).padStart(8);
export const pad = (s: string, n: number) => s.padEnd(n);
