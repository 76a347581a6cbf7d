/**
 * A VQ-VAE for inference: weights and quantizer state in flat buffers (shared with a trainer or
 * loaded from a checkpoint); `reconstruct`, `encode` (images → z_e) and `decode` (latents →
 * images) on plain arrays; and the held-out PSNR.
 */
import type { Kernels } from "../gpu/kernels.ts";
import { FlatBuffer } from "../gpu/arena.ts";
import type { Dataset } from "../data/dataset.ts";
import type { VQVAEConfig } from "./config.ts";
import { paramLayout, stateLayout } from "./params.ts";
import { VQVAEGraph } from "./vqvae.ts";
import type { Dispatch } from "../gpu/kernels.ts";

type Pass = "forward" | "encode" | "decode" | "decode-raw";

export class VQVAE {
  readonly params: FlatBuffer;
  readonly state: FlatBuffer;
  private graphs = new Map<number, VQVAEGraph>();
  private passes = new Map<string, Dispatch[]>();
  private queue: Promise<unknown> = Promise.resolve();
  private owned: FlatBuffer[] = [];

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
      this.owned.push(b);
      return b;
    };
    this.params = own(params, paramLayout(cfg), "params");
    this.state = own(state, stateLayout(cfg), "quantizer state");
  }

  /** The recorded graph for batch size B (built once). */
  graph(B: number): VQVAEGraph {
    let g = this.graphs.get(B);
    if (!g) {
      g = new VQVAEGraph(this.k, this.cfg, this.params, this.state, B);
      this.graphs.set(B, g);
    }
    return g;
  }

  private pass(B: number, pass: Pass): { g: VQVAEGraph; list: Dispatch[] } {
    const g = this.graph(B), key = `${B} ${pass}`;
    let list = this.passes.get(key);
    if (!list) {
      list = pass === "forward"
        ? g.forward()
        : pass === "encode"
        ? g.encodeLatent()
        : g.decodeLatent(pass === "decode");
      this.passes.set(key, list);
    }
    return { g, list };
  }

  /**
   * Run `pass` over `input` (whole items of `inSize` values) `batch` items at a time (the last
   * batch padded, so one graph serves any count); calls run one after another.
   */
  private run(
    input: Float32Array,
    inSize: number,
    pass: Pass,
    batch: number,
    what: string,
  ): Promise<Float32Array> {
    if (input.length % inSize !== 0 || input.length === 0) {
      throw new Error(`${what}: ${input.length} values are not whole items of ${inSize}`);
    }
    const job = this.queue.then(async () => {
      const N = input.length / inSize, B = Math.min(batch, N);
      const { g, list } = this.pass(B, pass);
      const [src, dst] = pass === "forward"
        ? [g.x, g.recon]
        : pass === "encode"
        ? [g.x, g.z]
        : [g.z, g.recon];
      const outSize = dst.length / B;
      const out = new Float32Array(N * outSize), buf = new Float32Array(B * inSize);
      for (let s = 0; s < N; s += B) {
        const n = Math.min(B, N - s);
        buf.fill(0);
        buf.set(input.subarray(s * inSize, (s + n) * inSize));
        this.k.write(src, buf);
        this.k.submit(list);
        const r = await this.k.read(dst);
        out.set(r.subarray(0, n * outSize), s * outSize);
      }
      return out;
    });
    this.queue = job.catch(() => {});
    return job;
  }

  /** Reconstructions of images x [N, C, H, W] in [-1, 1]. */
  reconstruct(x: Float32Array, batch = 64): Promise<Float32Array> {
    const { in_channels: C, image_size: H } = this.cfg;
    return this.run(x, C * H * H, "forward", batch, "reconstruct");
  }

  /** The encoder's continuous output z_e [N, D, H/4, W/4] (NCHW) of images x [N, C, H, W]. */
  encode(x: Float32Array, batch = 64): Promise<Float32Array> {
    const { in_channels: C, image_size: H } = this.cfg;
    return this.run(x, C * H * H, "encode", batch, "encode");
  }

  /**
   * Images [N, C, H, W] from latents z [N, D, H/4, W/4]: each latent cell snapped to its nearest
   * code first (`quantize`, default), or decoded as it is.
   */
  decode(
    z: Float32Array,
    opts: { quantize?: boolean; batch?: number } = {},
  ): Promise<Float32Array> {
    const h = this.cfg.image_size / 4;
    const pass = opts.quantize ?? true ? "decode" : "decode-raw";
    return this.run(z, this.cfg.code_dim * h * h, pass, opts.batch ?? 64, "decode");
  }

  /** Free the weights this model uploaded (not a trainer's shared buffers). */
  dispose(): void {
    for (const b of this.owned) b.buffer.destroy();
    this.owned = [];
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
