/**
 * The DiT2D velocity model on the GPU: parameters in one flat buffer (DiT state_dict layout),
 * a recorded graph per batch size, and `velocity(x, t, y)` on plain arrays.
 */
import { getGpu } from "../gpu/device.ts";
import { type Dispatch, Kernels, type Tensor } from "../gpu/kernels.ts";
import { FlatBuffer, type Layout } from "../gpu/arena.ts";
import { type DiTConfig, type PartialConfig, resolveConfig } from "./config.ts";
import { initParams, paramLayout, paramSpecs } from "./params.ts";
import { DiTGraph } from "./dit.ts";

/** Largest batch one recorded graph runs in `velocity` (bigger inputs are chunked). */
export const MAX_VELOCITY_BATCH = 256;

export class Model {
  readonly layout: Layout;
  readonly params: FlatBuffer;
  private graphs = new Map<number, { graph: DiTGraph; forward: Dispatch[] }>();

  constructor(readonly k: Kernels, readonly cfg: DiTConfig, weights?: Float32Array) {
    this.layout = paramLayout(cfg);
    this.params = new FlatBuffer(k.device, this.layout, "params");
    if (weights) this.setWeights(weights);
  }

  /** Upload a whole flat parameter vector (paramLayout order). */
  setWeights(flat: Float32Array): void {
    if (flat.length !== this.layout.total) {
      throw new Error(`weights: ${flat.length} values, the layout holds ${this.layout.total}`);
    }
    this.k.write(this.params.all(), flat);
  }

  /** Read the flat parameter vector back. */
  weights(): Promise<Float32Array> {
    return this.k.read(this.params.all());
  }

  /** The recorded graph (activations + forward dispatches) for batch size B, built once. */
  graph(B: number): { graph: DiTGraph; forward: Dispatch[] } {
    let g = this.graphs.get(B);
    if (!g) {
      const graph = new DiTGraph(this.k, this.cfg, this.params, B);
      g = { graph, forward: graph.forward() };
      this.graphs.set(B, g);
    }
    return g;
  }

  /**
   * The velocity v(x, t, y): x [B, C, H, W], t [B] in [0, 1] (0 noise, 1 data), y [B] integer
   * labels with num_classes meaning the null label (ignored by unconditional models).
   */
  async velocity(
    x: Float32Array,
    t: Float32Array,
    y: Int32Array | Uint32Array,
  ): Promise<Float32Array> {
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
    const out = new Float32Array(x.length);
    for (let s = 0; s < B; s += MAX_VELOCITY_BATCH) {
      const n = Math.min(MAX_VELOCITY_BATCH, B - s);
      const { graph, forward } = this.graph(n);
      this.k.write(graph.x, x.subarray(s * per, (s + n) * per));
      this.k.write(graph.t, t.subarray(s, s + n));
      this.k.write(graph.y, Uint32Array.from(K > 0 ? y.subarray(s, s + n) : new Uint32Array(n)));
      this.k.submit(forward);
      out.set(await this.k.read(graph.out), s * per);
    }
    return out;
  }
}

/** A view of the trainable part of a flat buffer of `layout` (all slots but pos_embed). */
export function trainableView(cfg: DiTConfig, layout: Layout, buf: FlatBuffer): Tensor {
  const frozen = paramSpecs(cfg).filter((s) => !s.trainable).map((s) => layout.get(s.name));
  // pos_embed is the first slot (DiT's state_dict order): the trainable range follows it.
  const start = frozen.reduce(
    (end, s) => Math.max(end, s.offset + Math.ceil(s.length / 64) * 64),
    0,
  );
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

/** A new model with DiT's initialisation (seeded). */
export async function createModel(
  config: PartialConfig,
  opts: { seed?: number } = {},
): Promise<Model> {
  const cfg = resolveConfig(config);
  const k = new Kernels(await getGpu());
  return new Model(k, cfg, initParams(cfg, opts.seed ?? 0));
}
