/**
 * A model: its config, its parameters in one flat GPU buffer (DiT state_dict layout), which
 * weights they are (raw or EMA), its precision, and the recorded graphs per batch size (the one
 * graph cache: the trainer, `velocity` and `generateImages` all use `graph(B)`).
 */
import { getGpu } from "../gpu/device.ts";
import { Kernels, type Tensor } from "../gpu/kernels.ts";
import { FlatBuffer, type Layout } from "../gpu/arena.ts";
import { type DiTConfig, type PartialConfig, resolveConfig } from "./config.ts";
import { initParams, paramLayout, paramSpecs } from "./params.ts";
import { DiTGraph } from "./dit.ts";

/** Largest batch one recorded graph runs in `velocity` (bigger inputs are chunked). */
export const MAX_VELOCITY_BATCH = 256;

/** Storage and compute precision of a model's weights and activations. */
export type Precision = "f32" | "f16";

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
  /** Only "f32" is implemented. */
  precision?: Precision;
  decoder?: LatentDecoder;
}

export class Model {
  readonly layout: Layout;
  readonly params: FlatBuffer;
  readonly kind: WeightKind;
  readonly precision: Precision;
  readonly decoder?: LatentDecoder;
  private graphs = new Map<number, DiTGraph>();
  private queue: Promise<unknown> = Promise.resolve();

  constructor(readonly k: Kernels, readonly cfg: DiTConfig, opts: ModelOptions = {}) {
    this.precision = opts.precision ?? "f32";
    if (this.precision !== "f32") {
      throw new Error(`model: precision ${this.precision} is not implemented yet (use f32)`);
    }
    this.kind = opts.kind ?? "raw";
    this.decoder = opts.decoder;
    this.layout = paramLayout(cfg);
    this.params = new FlatBuffer(k.device, this.layout, this.kind === "ema" ? "ema" : "params");
    if (opts.weights) this.setWeights(opts.weights);
  }

  /** Upload a whole flat parameter vector (paramLayout order). */
  setWeights(flat: Float32Array): void {
    if (flat.length !== this.layout.total) {
      throw new Error(`weights: ${flat.length} values, the layout holds ${this.layout.total}`);
    }
    this.k.write(this.params.all(), flat);
  }

  /** Read the flat parameter vector back. */
  readWeights(): Promise<Float32Array> {
    return this.k.read(this.params.all());
  }

  /** The recorded graph (activations, forward, backward) for batch size B, built once. */
  graph(B: number): DiTGraph {
    let g = this.graphs.get(B);
    if (!g) {
      g = new DiTGraph(this.k, this.cfg, this.params, B);
      this.graphs.set(B, g);
    }
    return g;
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
      for (let s = 0; s < B; s += MAX_VELOCITY_BATCH) {
        const n = Math.min(MAX_VELOCITY_BATCH, B - s);
        const graph = this.graph(n);
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

/** A view of the trainable part of a flat buffer of `layout` (all slots but pos_embed). */
export function trainableView(cfg: DiTConfig, layout: Layout, buf: FlatBuffer): Tensor {
  const frozen = paramSpecs(cfg).filter((s) => !s.trainable).map((s) => layout.get(s.name));
  // pos_embed is the first slot (DiT's state_dict order): the trainable range follows it.
  const start = frozen.reduce((end, s) => Math.max(end, layout.end(s)), 0);
  if (frozen.some((s) => s.offset >= start)) {
    throw new Error("layout: frozen tensors must come first");
  }
  return {
    buffer: buf.buffer,
    offset: start * 4,
    length: layout.total - start,
    shape: [layout.total - start],
  };
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
  const weights = initParams(cfg, opts.seed ?? 0);
  return new Model(k, cfg, { weights, precision: opts.precision, decoder: opts.decoder });
}
