/**
 * Datasets and the batcher that feeds training: images as [C,H,W] float arrays in [-1,1], seeded
 * shuffling per epoch with a state ({epoch, position, seed}) that can be saved and restored so a
 * resumed run sees exactly the same batches, and an optional seeded horizontal flip.
 * Web-standard only.
 */
import { mix32, SeededRng } from "../rng.ts";

/** One example: an image [C,H,W] in [-1,1] and its class (0 for an unconditional dataset). */
export interface Sample {
  image: Float32Array;
  label: number;
}

/** A random-access image dataset; `numClasses` 0 means unconditional (every label 0). */
export interface Dataset {
  length: number;
  imageSize: number;
  channels: number;
  numClasses: number;
  /** Optional class names, `numClasses` long. */
  classNames?: string[];
  get(i: number): Sample;
}

/** A dataset held in memory as bytes (N × C·H·W, 0..255) and labels; pixels map to [-1,1]. */
export class ArrayDataset implements Dataset {
  readonly length: number;
  private readonly size: number;

  constructor(
    /** N·C·H·W bytes, image-major, each image [C,H,W]. */
    readonly pixels: Uint8Array,
    readonly labels: Uint8Array | Int32Array,
    readonly channels: number,
    readonly imageSize: number,
    readonly numClasses: number,
    readonly classNames?: string[],
  ) {
    this.size = channels * imageSize * imageSize;
    if (pixels.length % this.size !== 0) {
      throw new Error(
        `dataset: ${pixels.length} pixel bytes is not a multiple of one image ` +
          `(${channels}×${imageSize}×${imageSize})`,
      );
    }
    this.length = pixels.length / this.size;
    if (labels.length !== this.length) {
      throw new Error(`dataset: ${this.length} images but ${labels.length} labels`);
    }
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      if (l < 0 || (numClasses > 0 ? l >= numClasses : l !== 0)) {
        throw new Error(`dataset: label ${l} of example ${i} is outside [0, ${numClasses})`);
      }
    }
  }

  get(i: number): Sample {
    if (!(i >= 0 && i < this.length) || !Number.isInteger(i)) {
      throw new RangeError(`dataset: index ${i} outside [0, ${this.length})`);
    }
    const image = new Float32Array(this.size);
    const base = i * this.size;
    for (let j = 0; j < this.size; j++) image[j] = this.pixels[base + j] / 127.5 - 1;
    return { image, label: this.labels[i] };
  }
}

/** In-place seeded Fisher–Yates shuffle. */
export function shuffle<T extends { length: number; [i: number]: number }>(
  a: T,
  rng: SeededRng,
): T {
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    const t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
  return a;
}

/** Where a batcher is: the epoch, the position inside its permutation, and the seed. */
export interface BatcherState {
  epoch: number;
  position: number;
  seed: number;
}

export interface BatcherOptions {
  seed?: number;
  /** Flip each image horizontally with probability 1/2 (seeded; for CIFAR-like data). */
  flip?: boolean;
  /**
   * Translate each image by (dx, dy), each uniform in [-shift, shift] (seeded), repeating the edge
   * pixels into the uncovered border: an augmentation for small datasets (0: none).
   */
  shift?: number;
}

/** A batch: images [B,C,H,W], labels [B], and the dataset indices they came from. */
export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  indices: Int32Array;
}

/**
 * Shuffled batches over epochs. Epoch e visits the permutation drawn from (seed, e), so every
 * index appears exactly once per epoch; a batch that reaches the end of an epoch continues into
 * the next. Flips and shifts are pure functions of (seed, epoch, position), so `state()` /
 * `restore()` reproduce the remaining batches exactly, mid-epoch too.
 */
export class Batcher {
  private seed: number;
  private epoch = 0;
  private position = 0;
  private perm: Int32Array | undefined;
  private permEpoch = -1;
  readonly flip: boolean;
  readonly shift: number;

  constructor(readonly dataset: Dataset, opts: BatcherOptions = {}) {
    if (dataset.length === 0) throw new Error("batcher: the dataset is empty");
    this.seed = (opts.seed ?? 0) >>> 0;
    this.flip = opts.flip ?? false;
    this.shift = opts.shift ?? 0;
    if (!Number.isInteger(this.shift) || this.shift < 0 || this.shift >= dataset.imageSize) {
      throw new Error(
        `batcher: shift ${this.shift} must be an integer in [0, ${dataset.imageSize - 1}]`,
      );
    }
  }

  state(): BatcherState {
    return { epoch: this.epoch, position: this.position, seed: this.seed };
  }

  restore(s: BatcherState): void {
    if (
      !Number.isInteger(s.epoch) || s.epoch < 0 || !Number.isInteger(s.position) ||
      s.position < 0 || s.position > this.dataset.length
    ) throw new Error(`batcher: invalid state ${JSON.stringify(s)}`);
    this.seed = s.seed >>> 0;
    this.epoch = s.epoch;
    this.position = s.position;
    this.permEpoch = -1;
  }

  /** The order of epoch `e` (dataset indices). */
  permutation(e: number): Int32Array {
    if (this.permEpoch !== e || !this.perm) {
      const p = new Int32Array(this.dataset.length);
      for (let i = 0; i < p.length; i++) p[i] = i;
      this.perm = shuffle(p, new SeededRng(mix32(this.seed ^ mix32(e + 0x51ed27))));
      this.permEpoch = e;
    }
    return this.perm;
  }

  next(batchSize: number): Batch {
    const ds = this.dataset;
    const size = ds.channels * ds.imageSize * ds.imageSize;
    const images = new Float32Array(batchSize * size);
    const labels = new Int32Array(batchSize);
    const indices = new Int32Array(batchSize);
    for (let b = 0; b < batchSize; b++) {
      if (this.position >= ds.length) {
        this.epoch++;
        this.position = 0;
      }
      const idx = this.permutation(this.epoch)[this.position];
      const { image, label } = ds.get(idx);
      if (image.length !== size) {
        throw new Error(`batcher: example ${idx} has ${image.length} values, expected ${size}`);
      }
      const flip = this.flip &&
        (mix32(mix32(this.seed ^ 0x7f4a7c15) ^ mix32(this.epoch) ^ this.position) & 1) === 1;
      let dx = 0, dy = 0;
      if (this.shift > 0) {
        // Its own hash of the same (seed, epoch, position): independent of the flip bit.
        const h = mix32(
          mix32(mix32(this.seed ^ 0x2c1b3c6d) ^ mix32(this.epoch + 0x9e37)) ^ this.position,
        );
        const n = 2 * this.shift + 1;
        dx = (h % n) - this.shift;
        dy = (Math.floor(h / n) % n) - this.shift;
      }
      if (flip || dx !== 0 || dy !== 0) {
        augmentInto(image, ds.channels, ds.imageSize, dx, dy, images, b * size, flip);
      } else images.set(image, b * size);
      labels[b] = label;
      indices[b] = idx;
      this.position++;
    }
    return { images, labels, indices };
  }
}

/**
 * Write a [C,S,S] image, mirrored horizontally first if `flip`, then translated by (dx, dy)
 * (content moves right and down for positive values), into `out` at `offset`; the border the
 * translation uncovers repeats the nearest edge pixel.
 */
export function augmentInto(
  image: Float32Array,
  channels: number,
  s: number,
  dx: number,
  dy: number,
  out: Float32Array,
  offset: number,
  flip = false,
): void {
  for (let c = 0; c < channels; c++) {
    for (let y = 0; y < s; y++) {
      const row = (c * s + Math.min(s - 1, Math.max(0, y - dy))) * s;
      const o = offset + (c * s + y) * s;
      for (let x = 0; x < s; x++) {
        const sx = Math.min(s - 1, Math.max(0, x - dx));
        out[o + x] = image[row + (flip ? s - 1 - sx : sx)];
      }
    }
  }
}
