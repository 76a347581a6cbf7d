/**
 * A model: its config, its parameters in one flat GPU buffer (DiT state_dict layout), which
 * weights they are (raw or EMA), its precision, and the recorded graphs per batch size (the one
 * graph cache: the trainer uses the training graph `graph(B)`; `velocity` and `generateImages`
 * the inference-only `inferenceGraph(B)`).
 *
 * Precision "f16" is mixed precision as in PyTorch AMP: the weights stay f32 (what checkpoints,
 * the optimizer and the EMA hold); `params16` is their f16 copy, which the blocks' GEMMs read,
 * refreshed by one cast dispatch whenever the f32 weights change outside the optimizer.
 */
import { getGpu, type Gpu } from "../gpu/device.ts";
import { type Dispatch, Kernels, type Tensor } from "../gpu/kernels.ts";
import { FlatBuffer, type Layout } from "../gpu/arena.ts";
import { type DiTConfig, type PartialConfig, resolveConfig } from "./config.ts";
import { initParams, paramLayout, paramSpecs } from "./params.ts";
import { DiTGraph } from "./dit.ts";
import type { Precision } from "./component.ts";
import { castF32ToF16 } from "../ops/cast.ts";

export type { Precision } from "./component.ts";

/** Largest batch one recorded graph runs in `velocity` (bigger inputs are chunked). */
export const MAX_VELOCITY_BATCH = 256;

/**
 * The precision used when none is asked for: f16 mixed precision on a hardware adapter with
 * `shader-f16` (on the H200 it trains as well as f32 — 1,500-step S/2 run, final smoothed loss
 * within 0.3% — and 1.2× faster; BENCHMARKS.md), f32 elsewhere, software adapters included
 * (where f16 is not faster and the CPU profile stays exact).
 */
export function defaultPrecision(gpu: Gpu): Precision {
  return gpu.features.has("shader-f16") && !gpu.isFallback ? "f16" : "f32";
}

/** Why `precision` cannot run on `gpu` (one line naming the fix), or undefined when it can. */
export function precisionProblem(gpu: Gpu, precision: Precision): string | undefined {
  if (precision === "f16" && !gpu.features.has("shader-f16")) {
    return `precision f16 needs the WebGPU feature shader-f16, which this adapter (${gpu.name}) ` +
      "lacks: use f32";
  }
  return undefined;
}

/** Which weights a model holds: the optimizer's (raw) or their exponential moving average. */
export type WeightKind = "raw" | "ema";

/**
 * A decoder from the model's space to images (e.g. a VAE decoder for latent flow matching):
 * `generateImages` decodes a latent model's samples with it. Pixel-space models have none.
 */
export interface LatentDecoder {
  /** Images in [-1, 1] from latents [N, C, H, W] (`shape`). */
  decode(
    latents: Float32Array,
    shape: readonly number[],
  ): Promise<{ images: Float32Array; shape: number[] }>;
}

export interface ModelOptions {
  /** Initial flat parameter vector (paramLayout order); default zeros. */
  weights?: Float32Array;
  /** What `weights` are (default "raw"). */
  kind?: WeightKind;
  /** "f32" (default) or "f16" (mixed precision; needs shader-f16). */
  precision?: Precision;
  decoder?: LatentDecoder;
}

export class Model {
  readonly layout: Layout;
  readonly params: FlatBuffer;
  readonly kind: WeightKind;
  readonly precision: Precision;
  /** f16: the f16 copy of `params` the GEMMs read. */
  readonly params16?: FlatBuffer;
  readonly decoder?: LatentDecoder;
  private graphs = new Map<string, DiTGraph>();
  private inferenceGraphs = new Map<number, DiTGraph>();
  private queue: Promise<unknown> = Promise.resolve();
  /** The f16 copy lags `params` (see `weightsChanged`). */
  private stale = false;

  constructor(readonly k: Kernels, readonly cfg: DiTConfig, opts: ModelOptions = {}) {
    this.precision = opts.precision ?? "f32";
    if (this.precision !== "f32" && this.precision !== "f16") {
      throw new Error(`model: unknown precision ${this.precision} (f32 or f16)`);
    }
    const why = precisionProblem(k.gpu, this.precision);
    if (why) throw new Error(why);
    this.kind = opts.kind ?? "raw";
    this.decoder = opts.decoder;
    this.layout = paramLayout(cfg);
    const label = this.kind === "ema" ? "ema" : "params";
    this.params = new FlatBuffer(k.device, this.layout, label);
    if (this.precision === "f16") {
      this.params16 = new FlatBuffer(k.device, this.layout, `${label} f16`, "f16");
    }
    if (opts.weights) this.setWeights(opts.weights);
  }

  /** Upload a whole flat parameter vector (paramLayout order); refreshes the f16 copy. */
  setWeights(flat: Float32Array): void {
    if (flat.length !== this.layout.total) {
      throw new Error(`weights: ${flat.length} values, the layout holds ${this.layout.total}`);
    }
    this.k.write(this.params.all(), flat);
    this.weightsChanged();
    this.syncHalf();
  }

  /**
   * Say that `params` changed on the GPU by other means than the optimizer step that writes the
   * f16 copy too (e.g. the EMA update): the copy is refreshed before the next inference.
   */
  weightsChanged(): void {
    this.stale = this.precision === "f16";
  }

  /** The cast that refreshes the f16 copy from `params` (none in f32). */
  halfRefresh(): Dispatch[] {
    return this.params16 ? castF32ToF16(this.k, this.params.all(), this.params16.all()) : [];
  }

  /** Submit the f16 copy's refresh if `params` changed since (queue-ordered; no wait). */
  syncHalf(): void {
    if (!this.stale) return;
    this.k.submit(this.halfRefresh());
    this.stale = false;
  }

  /** Read the flat parameter vector back. */
  readWeights(): Promise<Float32Array> {
    return this.k.read(this.params.all());
  }

  /**
   * The recorded training graph (activations, forward, backward) for batch size B, built once;
   * `recompute`: with activation checkpointing (see DiTGraph).
   */
  graph(B: number, opts: { recompute?: boolean } = {}): DiTGraph {
    const recompute = opts.recompute ?? false;
    const key = `${B}${recompute ? " recompute" : ""}`;
    let g = this.graphs.get(key);
    if (!g) {
      g = new DiTGraph(this.k, this.cfg, this.params, B, {
        ...this.graphOptions(false),
        recompute,
      });
      this.graphs.set(key, g);
    }
    return g;
  }

  /**
   * The recorded inference-only graph for batch size B (forward only, one block's activations),
   * built once. Call `syncHalf()` before submitting its forward in f16.
   */
  inferenceGraph(B: number): DiTGraph {
    let g = this.inferenceGraphs.get(B);
    if (!g) {
      g = new DiTGraph(this.k, this.cfg, this.params, B, this.graphOptions(true));
      this.inferenceGraphs.set(B, g);
    }
    return g;
  }

  private graphOptions(inference: boolean) {
    return { precision: this.precision, params16: this.params16, inference };
  }

  /**
   * Run `fn` after every earlier `exclusive` call on this model has finished: users of the
   * cached graphs (`velocity`, `generateImages`) must not interleave their inputs.
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  /**
   * The velocity v(x, t, y): x [B, C, H, W], t [B] in [0, 1] (0 noise, 1 data), y [B] integer
   * labels with num_classes meaning the null label (ignored by unconditional models).
   */
  velocity(x: Float32Array, t: Float32Array, y: Int32Array | Uint32Array): Promise<Float32Array> {
    const { image_size: H, in_channels: C, num_classes: K } = this.cfg;
    const per = C * H * H;
    const B = t.length;
    if (x.length !== B * per) {
      throw new Error(`velocity: x has ${x.length} values, expected ${B}×${C}×${H}×${H}`);
    }
    if (y.length !== B) throw new Error(`velocity: y has ${y.length} labels for ${B} times`);
    for (const v of y) {
      if (K > 0 && !(Number.isInteger(v) && v >= 0 && v <= K)) {
        throw new Error(`velocity: label ${v} out of range 0..${K} (${K} = null label)`);
      }
    }
    return this.exclusive(async () => {
      const out = new Float32Array(x.length);
      this.syncHalf();
      for (let s = 0; s < B; s += MAX_VELOCITY_BATCH) {
        const n = Math.min(MAX_VELOCITY_BATCH, B - s);
        const graph = this.inferenceGraph(n);
        this.k.write(graph.x, x.subarray(s * per, (s + n) * per));
        this.k.write(graph.t, t.subarray(s, s + n));
        this.k.write(graph.y, Uint32Array.from(K > 0 ? y.subarray(s, s + n) : new Uint32Array(n)));
        this.k.submit(graph.forward());
        out.set(await this.k.read(graph.out), s * per);
      }
      return out;
    });
  }
}

/** A view of the trainable part of a flat buffer of `layout` (all slots but pos_embed; f32 or f16). */
export function trainableView(cfg: DiTConfig, layout: Layout, buf: FlatBuffer): Tensor {
  const frozen = paramSpecs(cfg).filter((s) => !s.trainable).map((s) => layout.get(s.name));
  // pos_embed is the first slot (DiT's state_dict order): the trainable range follows it.
  const start = frozen.reduce((end, s) => Math.max(end, layout.end(s)), 0);
  if (frozen.some((s) => s.offset >= start)) {
    throw new Error("layout: frozen tensors must come first");
  }
  return buf.range(start);
}

let shared: Promise<Kernels> | undefined;
/** The Kernels (pipeline cache) models share unless given their own. */
export function defaultKernels(): Promise<Kernels> {
  shared ??= getGpu().then((gpu) => new Kernels(gpu));
  return shared;
}

/** A new model with DiT's initialisation (seeded). */
export async function createModel(
  config: PartialConfig,
  opts: { seed?: number; precision?: Precision; kernels?: Kernels; decoder?: LatentDecoder } = {},
): Promise<Model> {
  const cfg = resolveConfig(config);
  const k = opts.kernels ?? await defaultKernels();
  return new Model(k, cfg, {
    weights: initParams(cfg, opts.seed ?? 0),
    precision: opts.precision ?? defaultPrecision(k.gpu),
    decoder: opts.decoder,
  });
}
