/**
 * A VQ-VAE for inference: weights and quantizer state in flat buffers (shared with a trainer or
 * loaded from a checkpoint), `reconstruct` on plain arrays, and the held-out PSNR.
 */
import type { Kernels } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import type { Dataset } from "../data/dataset.ts";
import type { VQVAEConfig } from "./config.ts";
import { paramLayout, stateLayout } from "./params.ts";
import { VQVAEGraph } from "./vqvae.ts";
import type { Dispatch } from "../gpu/kernels.ts";

export class VQVAE {
  readonly params: FlatBuffer;
  readonly state: FlatBuffer;
  private graphs = new Map<number, { graph: VQVAEGraph; forward: Dispatch[] }>();

  /** Buffers are shared (a trainer's) or created and filled from arrays. */
  constructor(
    readonly k: Kernels,
    readonly cfg: VQVAEConfig,
    params: FlatBuffer | Float32Array,
    state: FlatBuffer | Float32Array,
  ) {
    const own = (
      src: FlatBuffer | Float32Array,
      layout: ReturnType<typeof paramLayout>,
      l: string,
    ) => {
      if (src instanceof FlatBuffer) return src;
      if (src.length !== layout.total) {
        throw new Error(`vqvae ${l}: ${src.length} values, the layout holds ${layout.total}`);
      }
      const b = new FlatBuffer(k.device, layout, l);
      k.write(b.all(), src);
      return b;
    };
    this.params = own(params, paramLayout(cfg), "params");
    this.state = own(state, stateLayout(cfg), "quantizer state");
  }

  /** The recorded inference graph for batch size B (built once). */
  graph(B: number): { graph: VQVAEGraph; forward: Dispatch[] } {
    let g = this.graphs.get(B);
    if (!g) {
      const graph = new VQVAEGraph(this.k, this.cfg, this.params, this.state, B);
      g = { graph, forward: graph.forward() };
      this.graphs.set(B, g);
    }
    return g;
  }

  /**
   * Reconstructions of images x [N, C, H, W] in [-1, 1], `batch` at a time (the last batch is
   * padded, so one graph serves any N).
   */
  async reconstruct(x: Float32Array, batch = 64): Promise<Float32Array> {
    const { in_channels: C, image_size: H } = this.cfg;
    const per = C * H * H;
    if (x.length % per !== 0) {
      throw new Error(`reconstruct: ${x.length} values are not images of ${C}×${H}×${H}`);
    }
    const N = x.length / per, B = Math.min(batch, N);
    const { graph, forward } = this.graph(B);
    const out = new Float32Array(x.length);
    const buf = new Float32Array(B * per);
    for (let s = 0; s < N; s += B) {
      const n = Math.min(B, N - s);
      buf.fill(0);
      buf.set(x.subarray(s * per, (s + n) * per));
      this.k.write(graph.x, buf);
      this.k.submit(forward);
      const r = await this.k.read(graph.recon);
      out.set(r.subarray(0, n * per), s * per);
    }
    return out;
  }
}

/**
 * PSNR of each image, on images mapped from [-1, 1] to [0, 1] (the reconstruction clamped to
 * it) with peak 1: 10·log10(1 / mean squared error), capped at 100 dB for an exact match.
 */
export function psnrPerImage(x: Float32Array, recon: Float32Array, per: number): Float64Array {
  const n = x.length / per, out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let se = 0;
    for (let j = i * per; j < (i + 1) * per; j++) {
      const r = Math.min(1, Math.max(0, (recon[j] + 1) / 2));
      se += (r - (x[j] + 1) / 2) ** 2;
    }
    out[i] = Math.min(100, 10 * Math.log10(per / Math.max(se, 1e-30)));
  }
  return out;
}

/** Mean per-image PSNR (dB) and MSE (on [-1, 1]) over the first `max` images of `ds` (0: all). */
export async function evaluate(
  model: VQVAE,
  ds: Dataset,
  opts: { max?: number; batch?: number } = {},
): Promise<{ psnr: number; mse: number; images: number }> {
  const n = opts.max && opts.max > 0 ? Math.min(opts.max, ds.length) : ds.length;
  const per = ds.channels * ds.imageSize * ds.imageSize;
  const x = new Float32Array(n * per);
  for (let i = 0; i < n; i++) x.set(ds.get(i).image, i * per);
  const r = await model.reconstruct(x, opts.batch ?? 64);
  const p = psnrPerImage(x, r, per);
  let se = 0;
  for (let i = 0; i < x.length; i++) se += (r[i] - x[i]) ** 2;
  return { psnr: p.reduce((a, b) => a + b, 0) / n, mse: se / x.length, images: n };
}
