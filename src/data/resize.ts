/**
 * Resizing images to another square size, for datasets stored at one size (Fashion-MNIST 28²,
 * CIFAR-10 32²) trained at another (`--image-size`). Separable, per axis: shrinking averages the
 * source area each output pixel covers (PIL's BOX, OpenCV's INTER_AREA: no aliasing); enlarging
 * is bilinear with half-pixel centres and clamped edges (PyTorch's
 * F.interpolate(mode="bilinear", align_corners=False), PIL's BILINEAR); the same size copies.
 * Bytes in, bytes out (rounded to nearest). Web-standard.
 */
import { ArrayDataset } from "./dataset.ts";

/** For each output index, the source indices it reads and their weights (summing to 1). */
export interface AxisWeights {
  idx: number[][];
  w: number[][];
}

/** Area weights of `out` pixels over the source span [start, start + len) (any ratio). */
export function areaWeights(start: number, len: number, out: number): AxisWeights {
  const idx: number[][] = [], w: number[][] = [];
  const scale = len / out;
  for (let o = 0; o < out; o++) {
    const a = o * scale, b = (o + 1) * scale;
    const is: number[] = [], ws: number[] = [];
    for (let s = Math.floor(a); s < Math.ceil(b); s++) {
      const wt = Math.min(b, s + 1) - Math.max(a, s);
      if (wt > 0) {
        is.push(start + s);
        ws.push(wt / scale);
      }
    }
    idx.push(is);
    w.push(ws);
  }
  return { idx, w };
}

/** Bilinear weights (half-pixel centres, clamped) of `out` pixels over `len` source pixels. */
export function bilinearWeights(len: number, out: number): AxisWeights {
  const idx: number[][] = [], w: number[][] = [];
  const scale = len / out;
  for (let o = 0; o < out; o++) {
    const src = Math.max(0, (o + 0.5) * scale - 0.5);
    const i0 = Math.min(Math.floor(src), len - 1), i1 = Math.min(i0 + 1, len - 1);
    const f = src - i0;
    idx.push([i0, i1]);
    w.push([1 - f, f]);
  }
  return { idx, w };
}

/** The weights that take `len` pixels to `out`: area when shrinking, bilinear when enlarging. */
export function resizeWeights(len: number, out: number): AxisWeights {
  return out > len ? bilinearWeights(len, out) : areaWeights(0, len, out);
}

/**
 * Resize `n` images of [C, S, S] bytes to [C, size, size] (rows, then columns, in float64, one
 * rounding at the end).
 */
export function resizeImages(
  pixels: Uint8Array,
  n: number,
  channels: number,
  from: number,
  size: number,
): Uint8Array {
  if (pixels.length !== n * channels * from * from) {
    throw new Error(`resize: ${pixels.length} bytes are not ${n} images of ${channels}×${from}²`);
  }
  const ax = resizeWeights(from, size);
  const out = new Uint8Array(n * channels * size * size);
  const rows = new Float64Array(size * from); // one plane resized along x: [from rows, size]
  for (let p = 0; p < n * channels; p++) {
    const src = p * from * from, dst = p * size * size;
    for (let y = 0; y < from; y++) {
      for (let x = 0; x < size; x++) {
        let v = 0;
        const is = ax.idx[x], ws = ax.w[x];
        for (let j = 0; j < is.length; j++) v += ws[j] * pixels[src + y * from + is[j]];
        rows[y * size + x] = v;
      }
    }
    for (let y = 0; y < size; y++) {
      const is = ax.idx[y], ws = ax.w[y];
      for (let x = 0; x < size; x++) {
        let v = 0;
        for (let j = 0; j < is.length; j++) v += ws[j] * rows[is[j] * size + x];
        out[dst + y * size + x] = Math.max(0, Math.min(255, Math.round(v)));
      }
    }
  }
  return out;
}

/** The dataset with every image resized to `size` (itself when already that size). */
export function resizeDataset(ds: ArrayDataset, size: number): ArrayDataset {
  if (!Number.isInteger(size) || size < 1) throw new Error(`image size ${size} is not valid`);
  if (size === ds.imageSize) return ds;
  const pixels = resizeImages(ds.pixels, ds.length, ds.channels, ds.imageSize, size);
  return new ArrayDataset(
    pixels,
    ds.labels,
    ds.channels,
    size,
    ds.numClasses,
    ds.classNames,
  );
}
