/**
 * Sampling images from a model: the solvers of src/flow driven on GPU tensors, with
 * classifier-free guidance (flow/guidance.ts `cfgCombine`) over one batched forward of
 * [cond; null] halves. The state stays on the GPU between steps; fixed-step solvers never read
 * back until the end.
 */
import type { Tensor } from "../gpu/kernels.ts";
import type { Model } from "./model.ts";
import { GpuVecOps } from "../ops/vecops.ts";
import { type Method, sample, type SolveStats } from "../flow/sample.ts";
import { cfgCombine, guidanceActive } from "../flow/guidance.ts";
import { mix32, SeededRng } from "../rng.ts";

export interface GenerateOptions {
  /** One label per image (num_classes = unconditional/null; ignored for unconditional models). */
  labels: ArrayLike<number>;
  /** Solver steps (fixed-step methods). Default 50. */
  steps?: number;
  /** Guidance scale s: v = v_u + s·(v_c − v_u); 1 disables guidance. Default 1. */
  cfgScale?: number;
  /** Guide only for t in [a, b]. */
  guidanceInterval?: [number, number];
  method?: Method;
  /** SD3 time shift on σ = 1 − t (fixed-step methods). Default 1. */
  shift?: number;
  atol?: number;
  rtol?: number;
  /** Image i's noise depends only on (seed, i): the same seed gives the same images at any batch. */
  seed?: number;
  /** Images per batched forward (default 64). */
  batch?: number;
  /** Called after each batch with (images done, total). */
  onProgress?: (done: number, total: number) => void;
  /** Decode a latent model's samples to pixels with `model.decoder` (default true). */
  decode?: boolean;
  /**
   * Called after each accepted solver step: images [first, first + count) of the batch are at
   * time `t` (0 noise, 1 data); `read()` reads their state x_t back (a GPU round trip, so a page
   * previews every few steps, not every step). Awaited before the next step.
   */
  onStep?: (s: StepInfo) => void | Promise<void>;
}

/** Generated images [N, C, H, W] (`shape`) and the number of model evaluations. */
export interface Generated {
  images: Float32Array;
  shape: number[];
  nfe: number;
}

/** What `GenerateOptions.onStep` is told after a solver step. */
export interface StepInfo {
  first: number;
  count: number;
  /** Accepted steps of this batch so far (from 1). */
  step: number;
  t: number;
  read: () => Promise<Float32Array>;
}

/** The starting noise of image `index` for `seed` (standard normals, C·H·W values). */
export function imageNoise(seed: number, index: number, size: number): Float32Array {
  const rng = new SeededRng([mix32(seed), mix32(index ^ 0x9e3779b9), seed >>> 0, index >>> 0]);
  return rng.normals(new Float32Array(size)) as Float32Array;
}

/**
 * Generate images [N, C, H, W] (values near [-1, 1]) by integrating dx/dt = v(x, t, y) from
 * t=0 (noise) to t=1 (data) with `model`; a latent model's samples are decoded to pixels by its
 * `decoder` (unless `decode: false`). Reuses the model's recorded inference graphs (in its
 * precision); calls on one model run one after another.
 */
export function generateImages(model: Model, opts: GenerateOptions): Promise<Generated> {
  const K = model.cfg.num_classes;
  for (const l of Array.from(opts.labels)) {
    if (K > 0 && !(Number.isInteger(l) && l >= 0 && l <= K)) {
      throw new Error(`class label ${l} out of range 0..${K - 1} (${K} = unconditional)`);
    }
  }
  return model.exclusive(async () => {
    const { images, nfe } = await generateWith(model, opts);
    const { in_channels: C, image_size: H } = model.cfg;
    const shape = [opts.labels.length, C, H, H];
    if (!model.decoder || opts.decode === false) return { images, shape, nfe };
    return { ...await model.decoder.decode(images, shape), nfe };
  });
}

async function generateWith(
  model: Model,
  opts: GenerateOptions,
): Promise<{ images: Float32Array; nfe: number }> {
  const { k, cfg } = model;
  const N = opts.labels.length;
  const per = cfg.in_channels * cfg.image_size ** 2;
  const K = cfg.num_classes;
  const scale = K > 0 ? opts.cfgScale ?? 1 : 1;
  const guided = scale !== 1;
  const batch = Math.max(1, Math.min(opts.batch ?? 64, N));
  const images = new Float32Array(N * per);
  const ops = new GpuVecOps(k);
  let nfe = 0;
  model.syncHalf();
  try {
    for (let s = 0; s < N; s += batch) {
      const n = Math.min(batch, N - s);
      // Forward only: the inference graph keeps one block's activations.
      const graph = model.inferenceGraph(guided ? 2 * n : n);
      const forward = graph.forward();
      const y = new Uint32Array(graph.B);
      for (let i = 0; i < n; i++) {
        y[i] = K > 0 ? opts.labels[s + i] : 0;
        if (guided) y[n + i] = K;
      }
      k.write(graph.y, y);
      const shape = [n, cfg.in_channels, cfg.image_size, cfg.image_size];
      const x = k.tensor(shape, "sample.x");
      const noise = new Float32Array(n * per);
      for (let i = 0; i < n; i++) noise.set(imageNoise(opts.seed ?? 0, s + i, per), i * per);
      k.write(x, noise);
      // v_c is the first half of the batched output; v_u (the null-label half) is copied out.
      const vc: Tensor = { ...graph.out, length: n * per, shape };
      const vu = guided ? ops.alloc(vc) : vc;
      const bytes = n * per * 4;
      const tArr = new Float32Array(graph.B);
      const velocity = (xv: Tensor, t: number, out: Tensor) => {
        tArr.fill(t);
        k.write(graph.t, tArr);
        const enc = k.device.createCommandEncoder();
        enc.copyBufferToBuffer(xv.buffer, xv.offset, graph.x.buffer, graph.x.offset, bytes);
        if (guided) {
          enc.copyBufferToBuffer(
            xv.buffer,
            xv.offset,
            graph.x.buffer,
            graph.x.offset + bytes,
            bytes,
          );
        }
        k.encode(enc, forward);
        if (guided) {
          enc.copyBufferToBuffer(
            graph.out.buffer,
            graph.out.offset + bytes,
            vu.buffer,
            vu.offset,
            bytes,
          );
        }
        k.device.queue.submit([enc.finish()]);
        cfgCombine(
          ops,
          vc,
          vu,
          guided && guidanceActive(t, opts.guidanceInterval) ? scale : 1,
          out,
        );
      };
      const stats: SolveStats = await sample(ops, velocity, x, {
        method: opts.method,
        steps: opts.steps ?? 50,
        shift: opts.shift,
        atol: opts.atol,
        rtol: opts.rtol,
        onStep: opts.onStep &&
          ((xs: Tensor, t: number, step: number) =>
            opts.onStep!({ first: s, count: n, step, t, read: () => k.read(xs) })),
      });
      nfe += stats.nfe;
      images.set(await k.read(x), s * per);
      x.buffer.destroy();
      if (guided) ops.free(vu);
      opts.onProgress?.(s + n, N);
    }
  } finally {
    ops.dispose();
  }
  return { images, nfe };
}
