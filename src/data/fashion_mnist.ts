/**
 * Fashion-MNIST: IDX files (optionally gzipped) → a dataset of 1×28×28 images in [-1,1], 10
 * classes. Web-standard only (DecompressionStream, fetch), so it runs in a browser; the embedded
 * class-balanced subset is fetched relative to this module.
 */
import { ArrayDataset } from "./dataset.ts";

export const FASHION_MNIST_CLASSES = [
  "T-shirt/top",
  "Trouser",
  "Pullover",
  "Dress",
  "Coat",
  "Sandal",
  "Shirt",
  "Sneaker",
  "Bag",
  "Ankle boot",
];

/** True if `bytes` starts with the gzip magic 1f 8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

async function pipe(
  bytes: Uint8Array,
  t: { writable: WritableStream<BufferSource>; readable: ReadableStream<Uint8Array> },
) {
  const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream().pipeThrough(t);
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** Gunzip with DecompressionStream("gzip"); bytes that are not gzip are returned as they are. */
export async function gunzip(bytes: Uint8Array, name = "data"): Promise<Uint8Array> {
  if (!isGzip(bytes)) return bytes;
  try {
    return await pipe(bytes, new DecompressionStream("gzip"));
  } catch (e) {
    throw new Error(`${name}: gzip decompression failed (${(e as Error).message})`);
  }
}

/** Gzip with CompressionStream("gzip"). */
export function gzip(bytes: Uint8Array): Promise<Uint8Array> {
  return pipe(bytes, new CompressionStream("gzip"));
}

/** A parsed IDX file of unsigned bytes. */
export interface Idx {
  dims: number[];
  data: Uint8Array;
}

/**
 * Parse an IDX file (magic 00 00 08 nd, then nd big-endian u32 sizes, then the bytes).
 * `expectDims` checks the number of dimensions (3 for images, 1 for labels).
 */
export function parseIdx(bytes: Uint8Array, name = "IDX file", expectDims?: number): Idx {
  if (bytes.length < 4) throw new Error(`${name}: ${bytes.length} bytes is too short for IDX`);
  const hex = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, "0")).join("");
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${name}: bad IDX magic number 0x${hex} (must start 0x0000; not an IDX file?)`);
  }
  if (bytes[2] !== 0x08) {
    throw new Error(
      `${name}: IDX magic 0x${hex} has element type 0x${
        bytes[2].toString(16).padStart(2, "0")
      }; only unsigned bytes (0x08) are supported`,
    );
  }
  const nd = bytes[3];
  if (expectDims !== undefined && nd !== expectDims) {
    throw new Error(
      `${name}: IDX magic 0x${hex} has ${nd} dimensions, expected ${expectDims} ` +
        `(magic 0x000008${expectDims.toString(16).padStart(2, "0")})`,
    );
  }
  const header = 4 + 4 * nd;
  if (bytes.length < header) throw new Error(`${name}: truncated IDX header`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < nd; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, b) => a * b, 1);
  if (bytes.length !== header + count) {
    throw new Error(
      `${name}: IDX dimensions [${dims.join(", ")}] need ${header + count} bytes, ` +
        `the file has ${bytes.length}${bytes.length < header + count ? " (truncated?)" : ""}`,
    );
  }
  return { dims, data: bytes.subarray(header) };
}

/** Encode unsigned bytes of shape `dims` as an IDX file. */
export function encodeIdx(dims: number[], data: Uint8Array): Uint8Array {
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new Error(`encodeIdx: dims [${dims}] hold ${count} values, got ${data.length}`);
  }
  const out = new Uint8Array(4 + 4 * dims.length + count);
  const view = new DataView(out.buffer);
  out[2] = 0x08;
  out[3] = dims.length;
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  out.set(data, 4 + 4 * dims.length);
  return out;
}

/** Fashion-MNIST (or MNIST) from the bytes of its image and label IDX files, gzipped or not. */
export async function fashionMnistFromBytes(
  imagesGz: Uint8Array,
  labelsGz: Uint8Array,
  names: [string, string] = ["images file", "labels file"],
): Promise<ArrayDataset> {
  const images = parseIdx(await gunzip(imagesGz, names[0]), names[0], 3);
  const labels = parseIdx(await gunzip(labelsGz, names[1]), names[1], 1);
  const [n, h, w] = images.dims;
  if (h !== w) throw new Error(`${names[0]}: images are ${h}×${w}, expected square`);
  if (labels.dims[0] !== n) {
    throw new Error(`${names[0]} has ${n} images but ${names[1]} has ${labels.dims[0]} labels`);
  }
  for (let i = 0; i < n; i++) {
    if (labels.data[i] >= 10) {
      throw new Error(`${names[1]}: label ${labels.data[i]} at ${i} is not in 0..9`);
    }
  }
  return new ArrayDataset(images.data, labels.data, 1, h, 10, FASHION_MNIST_CLASSES);
}

/** The embedded subset's files, relative to this module. */
export const SUBSET_IMAGES_URL = new URL(
  "../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz",
  import.meta.url,
);
export const SUBSET_LABELS_URL = new URL(
  "../../data/fashion-mnist-subset/train-labels-idx1-ubyte.gz",
  import.meta.url,
);

async function fetchBytes(url: URL): Promise<Uint8Array> {
  let res: Response;
  try {
    res = await fetch(url);
  } catch (e) {
    throw new Error(`cannot fetch ${url.href}: ${(e as Error).message}`);
  }
  if (!res.ok) throw new Error(`cannot fetch ${url.href}: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/**
 * The embedded default dataset: 6000 Fashion-MNIST training images, 600 per class (MIT licence,
 * Zalando Research). Fetched relative to this module, so it works from file: and https: URLs.
 */
export async function loadFashionMnistSubset(): Promise<ArrayDataset> {
  const [images, labels] = await Promise.all([
    fetchBytes(SUBSET_IMAGES_URL),
    fetchBytes(SUBSET_LABELS_URL),
  ]);
  return fashionMnistFromBytes(images, labels, [SUBSET_IMAGES_URL.href, SUBSET_LABELS_URL.href]);
}
