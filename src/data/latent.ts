/**
 * A dataset of latents: the training set of latent flow matching. Each "image" is a latent
 * [C, h, w] (e.g. a VQ-VAE encoder's z_e, C = the code dimension), already multiplied by the
 * space's scale so that the values have unit variance. Web-standard only.
 */
import type { Dataset, Sample } from "./dataset.ts";

export class LatentDataset implements Dataset {
  readonly length: number;
  private readonly size: number;

  constructor(
    /** N·C·h·w values, item-major, each [C, h, w], already scaled. */
    readonly latents: Float32Array,
    readonly labels: ArrayLike<number>,
    readonly channels: number,
    readonly imageSize: number,
    readonly numClasses: number,
    readonly classNames?: string[],
  ) {
    this.size = channels * imageSize * imageSize;
    this.length = latents.length / this.size;
    if (!Number.isInteger(this.length) || this.length < 1) {
      throw new Error(
        `latents: ${latents.length} values are not whole latents of ` +
          `${channels}×${imageSize}×${imageSize}`,
      );
    }
    if (labels.length !== this.length) {
      throw new Error(`latents: ${this.length} latents but ${labels.length} labels`);
    }
  }

  get(i: number): Sample {
    if (!(i >= 0 && i < this.length) || !Number.isInteger(i)) {
      throw new RangeError(`latents: index ${i} outside [0, ${this.length})`);
    }
    return {
      image: this.latents.slice(i * this.size, (i + 1) * this.size),
      label: this.labels[i],
    };
  }
}

/**
 * The factor that gives `latents` unit variance: 1 / their standard deviation over every value
 * (as latent diffusion's scale_factor; no shift). Sums in float64, in order.
 */
export function latentScale(latents: Float32Array): number {
  const n = latents.length;
  let sum = 0;
  for (let i = 0; i < n; i++) sum += latents[i];
  const mean = sum / n;
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (latents[i] - mean) ** 2;
  const std = Math.sqrt(ss / n);
  if (!(std > 0) || !Number.isFinite(std)) {
    throw new Error(`latents: standard deviation ${std}: cannot scale them to unit variance`);
  }
  return 1 / std;
}

/** `latents` multiplied by `scale` (a new array). */
export function scaleLatents(latents: Float32Array, scale: number): Float32Array {
  const out = new Float32Array(latents.length);
  for (let i = 0; i < latents.length; i++) out[i] = latents[i] * scale;
  return out;
}
