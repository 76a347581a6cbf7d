/**
 * Sampling images from a DiT velocity model: the solvers of src/flow driven on GPU tensors, with
 * classifier-free guidance as one batched forward over [cond; null] halves. The state stays on the
 * GPU between steps; fixed-step solvers never read back until the end.
 */
import type { Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "./config.ts";
import { DiTGraph } from "./dit.ts";
import { GpuVecOps } from "../flow/vecops.ts";
import { guidanceActive, type Method, sample, type SolveStats } from "../flow/sample.ts";
import { cfgCombineForward } from "../ops/cfg.ts";
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
}

/** The starting noise of image `index` for `seed` (standard normals, C·H·W values). */
export function imageNoise(seed: number, index: number, size: number): Float32Array {
  const rng = new SeededRng([mix32(seed), mix32(index ^ 0x9e3779b9), seed >>> 0, index >>> 0]);
  return rng.normals(new Float32Array(size)) as Float32Array;
}

type Recorded = { graph: DiTGraph; forward: ReturnType<DiTGraph["forward"]> };

/**
 * Recorded forward graphs per weight buffer, reused by later calls (a training run samples a grid
 * from its EMA buffer every few thousand steps: a new graph each time would leak its activations),
 * and the tail of that buffer's calls, so calls sharing the graphs run one after another.
 */
const graphCache = new WeakMap<
  FlatBuffer,
  { graphs: Map<string, Recorded>; queue: Promise<unknown> }
>();

/**
 * Generate images [N, C, H, W] (values near [-1, 1]) by integrating dx/dt = v(x, t, y) from
 * t=0 (noise) to t=1 (data) with the model whose weights are `params`.
 */
export function generateImages(
  k: Kernels,
  cfg: DiTConfig,
  params: FlatBuffer,
  opts: GenerateOptions,
): Promise<{ images: Float32Array; nfe: number }> {
  let entry = graphCache.get(params);
  if (!entry) {
    entry = { graphs: new Map(), queue: Promise.resolve() };
    graphCache.set(params, entry);
  }
  const graphs = entry.graphs;
  const run = entry.queue.then(() => generateWith(k, cfg, params, opts, graphs));
  entry.queue = run.catch(() => {});
  return run;
}

async function generateWith(
  k: Kernels,
  cfg: DiTConfig,
  params: FlatBuffer,
  opts: GenerateOptions,
  graphs: Map<string, Recorded>,
): Promise<{ images: Float32Array; nfe: number }> {
  const N = opts.labels.length;
  const per = cfg.in_channels * cfg.image_size ** 2;
  const K = cfg.num_classes;
  const scale = K > 0 ? opts.cfgScale ?? 1 : 1;
  const guided = scale !== 1;
  const batch = Math.max(1, Math.min(opts.batch ?? 64, N));
  for (const l of Array.from(opts.labels)) {
    if (K > 0 && !(Number.isInteger(l) && l >= 0 && l <= K)) {
      throw new Error(`class label ${l} out of range 0..${K - 1} (${K} = unconditional)`);
    }
  }
  const images = new Float32Array(N * per);
  const ops = new GpuVecOps(k);
  let nfe = 0;
  try {
    for (let s = 0; s < N; s += batch) {
      const n = Math.min(batch, N - s);
      const gb = guided ? 2 * n : n;
      const key = `${gb} ${JSON.stringify(cfg)}`;
      let g = graphs.get(key);
      if (!g) {
        const graph = new DiTGraph(k, cfg, params, gb);
        g = { graph, forward: graph.forward() };
        graphs.set(key, g);
      }
      const { graph, forward } = g;
      const y = new Uint32Array(gb);
      for (let i = 0; i < n; i++) {
        y[i] = K > 0 ? opts.labels[s + i] : 0;
        if (guided) y[n + i] = K;
      }
      k.write(graph.y, y);
      const x = k.tensor([n, cfg.in_channels, cfg.image_size, cfg.image_size], "sample.x");
      const noise = new Float32Array(n * per);
      for (let i = 0; i < n; i++) noise.set(imageNoise(opts.seed ?? 0, s + i, per), i * per);
      k.write(x, noise);
      const combine = new Map<
        Tensor,
        {
          guided: ReturnType<typeof cfgCombineForward>;
          plain: ReturnType<typeof cfgCombineForward>;
        }
      >();
      const tArr = new Float32Array(gb);
      const velocity = (xv: Tensor, t: number, out: Tensor) => {
        let c = combine.get(out);
        if (!c) {
          c = {
            guided: cfgCombineForward(k, graph.out, out, scale),
            plain: cfgCombineForward(k, graph.out, out, 1),
          };
          combine.set(out, c);
        }
        tArr.fill(t);
        k.write(graph.t, tArr);
        const enc = k.device.createCommandEncoder();
        enc.copyBufferToBuffer(xv.buffer, xv.offset, graph.x.buffer, graph.x.offset, n * per * 4);
        if (guided) {
          enc.copyBufferToBuffer(
            xv.buffer,
            xv.offset,
            graph.x.buffer,
            graph.x.offset + n * per * 4,
            n * per * 4,
          );
        }
        k.encode(enc, [
          ...forward,
          guided && guidanceActive(t, opts.guidanceInterval) ? c.guided : c.plain,
        ]);
        k.device.queue.submit([enc.finish()]);
      };
      const stats: SolveStats = await sample(ops, velocity, x, {
        method: opts.method,
        steps: opts.steps ?? 50,
        shift: opts.shift,
        atol: opts.atol,
        rtol: opts.rtol,
      });
      nfe += stats.nfe;
      images.set(await k.read(x), s * per);
      x.buffer.destroy();
      opts.onProgress?.(s + n, N);
    }
  } finally {
    ops.dispose();
  }
  return { images, nfe };
}
