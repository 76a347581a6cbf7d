/**
 * The VQ-VAE as the latent space of latent flow matching: a dataset encoded into the encoder's
 * continuous output z_e (as latent diffusion's dataloaders do), the scale that gives it unit
 * variance, and the decoder a flow model carries in its `Model.decoder` slot: un-scale, snap to
 * the codebook (by default) and decode to pixels. Web-standard.
 */
import type { Kernels } from "../gpu/kernels.ts";
import type { Dataset } from "../data/dataset.ts";
import type { LatentDecoder } from "../model/model.ts";
import { latentSize } from "./config.ts";
import type { VqvaeWeights } from "./checkpoint.ts";
import { VQVAE } from "./model.ts";

/** A flow model's latent space: the VQ-VAE and the scale its latents were trained at. */
export interface LatentSpace {
  /** The VQ-VAE (weights and quantizer state): its encoder made the latents. */
  vqvae: VqvaeWeights;
  /** The flow model sees z_e · scale (unit variance over the training set). */
  scale: number;
}

/** Whether the decode path snaps latents to the codebook, and its batch. */
export interface DecodeOptions {
  /** Snap each latent cell to its nearest code before decoding (default true). */
  quantize?: boolean;
  /** Latents per decoder pass (default 64). */
  batch?: number;
}

/**
 * Every image of `ds` encoded: z_e [N, D, h, w] (NCHW, unscaled) and the labels, `batch` images
 * per pass; `onProgress(done, total)` after each pass.
 */
export async function encodeDataset(
  vq: VQVAE,
  ds: Dataset,
  opts: { batch?: number; onProgress?: (done: number, total: number) => void } = {},
): Promise<{ latents: Float32Array; labels: Int32Array }> {
  const cfg = vq.cfg;
  if (ds.imageSize !== cfg.image_size || ds.channels !== cfg.in_channels) {
    throw new Error(
      `the VQ-VAE encodes ${cfg.in_channels}×${cfg.image_size}² images, the dataset's are ` +
        `${ds.channels}×${ds.imageSize}²`,
    );
  }
  const per = cfg.in_channels * cfg.image_size ** 2, h = latentSize(cfg);
  const zPer = cfg.code_dim * h * h, N = ds.length;
  const batch = Math.max(1, opts.batch ?? 256);
  const latents = new Float32Array(N * zPer), labels = new Int32Array(N);
  const x = new Float32Array(Math.min(batch, N) * per);
  for (let s = 0; s < N; s += batch) {
    const n = Math.min(batch, N - s);
    for (let i = 0; i < n; i++) {
      const { image, label } = ds.get(s + i);
      x.set(image, i * per);
      labels[s + i] = label;
    }
    const z = await vq.encode(x.subarray(0, n * per), batch);
    latents.set(z, s * zPer);
    opts.onProgress?.(s + n, N);
  }
  return { latents, labels };
}

/** The decode path of a latent flow model: latents (scaled) → pixels in [-1, 1]. */
export class VqvaeLatentDecoder implements LatentDecoder {
  readonly vqvae: VQVAE;
  readonly quantize: boolean;
  private readonly batch: number;

  constructor(k: Kernels, readonly space: LatentSpace, opts: DecodeOptions = {}) {
    if (!(space.scale > 0 && Number.isFinite(space.scale))) {
      throw new Error(`latent space: scale ${space.scale} is not a positive number`);
    }
    const { cfg, params, state } = space.vqvae;
    this.vqvae = new VQVAE(k, cfg, params, state);
    this.quantize = opts.quantize ?? true;
    this.batch = opts.batch ?? 64;
  }

  /** Channels and side of the latents this decodes (the flow model's in_channels, image_size). */
  get latentShape(): { channels: number; size: number } {
    const cfg = this.space.vqvae.cfg;
    return { channels: cfg.code_dim, size: latentSize(cfg) };
  }

  async decode(
    latents: Float32Array,
    shape: readonly number[],
  ): Promise<{ images: Float32Array; shape: number[] }> {
    const { channels, size } = this.latentShape, cfg = this.space.vqvae.cfg;
    const [N, C, H, W] = shape;
    if (shape.length !== 4 || C !== channels || H !== size || W !== size) {
      throw new Error(
        `latent decoder: latents [${shape}], the VQ-VAE decodes [N, ${channels}, ${size}, ${size}]`,
      );
    }
    if (latents.length !== N * C * H * W) {
      throw new Error(`latent decoder: ${latents.length} values for shape [${shape}]`);
    }
    const inv = 1 / this.space.scale, z = new Float32Array(latents.length);
    for (let i = 0; i < z.length; i++) z[i] = latents[i] * inv;
    const images = await this.vqvae.decode(z, { quantize: this.quantize, batch: this.batch });
    return { images, shape: [N, cfg.in_channels, cfg.image_size, cfg.image_size] };
  }

  /** Free the VQ-VAE's weights on the GPU. */
  dispose(): void {
    this.vqvae.dispose();
  }
}
