/**
 * Loading datasets from disk (Deno): Fashion-MNIST (a --data folder, the Debian package
 * dataset-fashion-mnist, or the embedded subset), CIFAR-10 binary batches, and image folders
 * (one subfolder per class, PNG/JPEG) decoded with imagescript, and the emoji dataset
 * (src/io/emoji.ts: its training split; fetched and cached on first use).
 */
import { decodeImage } from "./image_decode.ts";
import { ArrayDataset, type Dataset } from "../data/dataset.ts";
import { fashionMnistFromBytes, loadFashionMnistSubset } from "../data/fashion_mnist.ts";
import { cifar10FromBytes } from "../data/cifar10.ts";
import { loadEmoji } from "./emoji.ts";
import { areaWeights, resizeDataset } from "../data/resize.ts";

export type DatasetName = "fashion-mnist" | "cifar10" | "folder" | "default" | "emoji";

export interface LoadOptions {
  /**
   * The side images are resized to (src/data/resize.ts: area when shrinking, bilinear when
   * enlarging); default: the dataset's own (Fashion-MNIST 28, CIFAR-10 32), 32 for image folders
   * and emoji (which are resampled from their files).
   */
  imageSize?: number;
  /** The DiT patch size: loading fails early if it does not divide the image size. */
  patchSize?: number;
  /** Image folder: 3 (RGB, default) or 1 (luminance). */
  channels?: 1 | 3;
}

/**
 * Training options a dataset implies unless the user sets them: CIFAR-10's natural images are
 * flipped horizontally at random (as DiT trains ImageNet); the others are not.
 */
export function datasetTrainDefaults(name: string): { hflip: boolean } {
  return { hflip: name === "cifar10" };
}

export const DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist";
const FMNIST_FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"] as const;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

function join(dir: string, name: string): string {
  return dir.endsWith("/") ? dir + name : `${dir}/${name}`;
}

function checkPatch(ds: Dataset, patchSize?: number): Dataset {
  if (patchSize !== undefined && (patchSize < 1 || ds.imageSize % patchSize !== 0)) {
    throw new Error(
      `image size ${ds.imageSize} is not divisible by the patch size ${patchSize}; ` +
        `choose a patch size that divides ${ds.imageSize}`,
    );
  }
  return ds;
}

/**
 * Load a dataset by name. `dir` is the --data folder: required for "cifar10" and "folder";
 * for "fashion-mnist" it falls back to the Debian package's folder, then the embedded subset.
 */
export async function loadDataset(
  name: DatasetName,
  dir?: string,
  opts: LoadOptions = {},
): Promise<Dataset> {
  const sized = (ds: ArrayDataset) =>
    checkPatch(opts.imageSize ? resizeDataset(ds, opts.imageSize) : ds, opts.patchSize);
  switch (name) {
    case "default":
      return sized(await loadFashionMnistSubset());
    case "fashion-mnist":
      return sized(await loadFashionMnist(dir));
    case "cifar10":
      if (!dir) throw new Error("cifar10: give the folder of data_batch_1..5.bin with --data DIR");
      return sized(await loadCifar10(dir));
    case "folder":
      if (!dir) throw new Error("folder dataset: give the image folder with --data DIR");
      return loadImageFolder(dir, opts);
    case "emoji": {
      // --data names the cache folder (default data/emoji/ of the checkout).
      const r = await loadEmoji({ dir, imageSize: opts.imageSize, log: (l) => console.log(l) });
      return checkPatch(r.train, opts.patchSize);
    }
    default:
      throw new Error(
        `unknown dataset "${name}" (use fashion-mnist, cifar10, folder, emoji or default)`,
      );
  }
}

/** Fashion-MNIST from `dir` (both train files must be there), else Debian's, else embedded. */
export async function loadFashionMnist(dir?: string): Promise<ArrayDataset> {
  const from = async (d: string) => {
    const paths: string[] = [], missing: string[] = [];
    for (const f of FMNIST_FILES) {
      // The .gz file, or the same file already decompressed.
      const p = join(d, f), raw = p.replace(/\.gz$/, "");
      if (await exists(p)) paths.push(p);
      else if (await exists(raw)) paths.push(raw);
      else missing.push(p);
    }
    if (missing.length) return missing;
    const [im, lb] = await Promise.all(paths.map((p) => Deno.readFile(p)));
    return fashionMnistFromBytes(im, lb, [paths[0], paths[1]]);
  };
  if (dir) {
    const r = await from(dir);
    if (Array.isArray(r)) {
      throw new Error(`fashion-mnist: missing ${r.join(", ")} in ${dir}`);
    }
    return r;
  }
  const r = await from(DEBIAN_FASHION_MNIST);
  if (!Array.isArray(r)) return r;
  return loadFashionMnistSubset();
}

/** CIFAR-10 from data_batch_1..5.bin in `dir` (or in its cifar-10-batches-bin subfolder). */
export async function loadCifar10(dir: string): Promise<ArrayDataset> {
  const names = [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`);
  let base = dir;
  const sub = join(dir, "cifar-10-batches-bin");
  if (!(await exists(join(dir, names[0]))) && (await exists(join(sub, names[0])))) base = sub;
  const paths = names.map((n) => join(base, n));
  const missing: string[] = [];
  for (const p of paths) if (!(await exists(p))) missing.push(p);
  if (missing.length) {
    throw new Error(
      `cifar10: missing ${missing.join(", ")} (expected the binary version of CIFAR-10: ` +
        `data_batch_1.bin … data_batch_5.bin)`,
    );
  }
  const files = await Promise.all(paths.map((p) => Deno.readFile(p)));
  return cifar10FromBytes(files, paths);
}

const IMAGE_EXT = /\.(png|jpe?g)$/i;

async function listDir(dir: string): Promise<{ dirs: string[]; images: string[] }> {
  const dirs: string[] = [], images: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.name.startsWith(".")) continue;
      if (e.isDirectory) dirs.push(e.name);
      else if (e.isFile && IMAGE_EXT.test(e.name)) images.push(e.name);
    }
  } catch (e) {
    throw new Error(`image folder ${dir}: cannot read (${(e as Error).message})`);
  }
  dirs.sort();
  images.sort();
  return { dirs, images };
}

/**
 * An image folder: one subfolder per class (sorted names are the classes), or images directly in
 * `dir` for an unconditional dataset (numClasses 0). PNG/JPEG, centre-cropped to a square and
 * area-resampled to `imageSize`.
 */
export async function loadImageFolder(dir: string, opts: LoadOptions = {}): Promise<ArrayDataset> {
  const size = opts.imageSize ?? 32;
  const channels = opts.channels ?? 3;
  if (!Number.isInteger(size) || size < 1) throw new Error(`image size ${size} is not valid`);
  if (channels !== 1 && channels !== 3) throw new Error(`channels must be 1 or 3, not ${channels}`);
  if (opts.patchSize !== undefined && (opts.patchSize < 1 || size % opts.patchSize !== 0)) {
    throw new Error(
      `image size ${size} is not divisible by the patch size ${opts.patchSize}; ` +
        `choose an image size that is a multiple of ${opts.patchSize}`,
    );
  }
  const top = await listDir(dir);
  const files: { path: string; label: number }[] = [];
  let classNames: string[] | undefined;
  if (top.dirs.length > 0) {
    if (top.images.length > 0) {
      throw new Error(
        `image folder ${dir} has both class subfolders (${top.dirs.join(", ")}) and loose ` +
          `images (${top.images.slice(0, 3).join(", ")}…); put every image in a class folder`,
      );
    }
    classNames = top.dirs;
    for (let c = 0; c < top.dirs.length; c++) {
      const sub = join(dir, top.dirs[c]);
      const { images } = await listDir(sub);
      if (images.length === 0) {
        throw new Error(`image folder ${dir}: class folder ${sub} contains no PNG/JPEG images`);
      }
      for (const f of images) files.push({ path: join(sub, f), label: c });
    }
  } else {
    for (const f of top.images) files.push({ path: join(dir, f), label: 0 });
  }
  if (files.length === 0) {
    throw new Error(`image folder ${dir} is empty: it contains no PNG/JPEG images`);
  }
  const per = channels * size * size;
  const pixels = new Uint8Array(files.length * per);
  const labels = new Int32Array(files.length);
  for (let i = 0; i < files.length; i++) {
    const { path, label } = files[i];
    let img;
    try {
      img = await decodeImage(await Deno.readFile(path));
    } catch (e) {
      throw new Error(`cannot read image ${path}: ${(e as Error)?.message ?? e}`);
    }
    resampleInto(img.bitmap, img.width, img.height, size, channels, pixels, i * per);
    labels[i] = label;
  }
  return new ArrayDataset(pixels, labels, channels, size, classNames?.length ?? 0, classNames);
}

/**
 * Centre-crop an RGBA bitmap to a square and area-resample it to `size`, writing [C,size,size]
 * bytes (RGB or luminance) into `out` at `offset`.
 */
export function resampleInto(
  rgba: Uint8ClampedArray | Uint8Array,
  width: number,
  height: number,
  size: number,
  channels: 1 | 3,
  out: Uint8Array,
  offset: number,
): void {
  const side = Math.min(width, height);
  const ax = areaWeights(Math.floor((width - side) / 2), side, size);
  const ay = areaWeights(Math.floor((height - side) / 2), side, size);
  const plane = size * size;
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < ay.idx[y].length; j++) {
        const wy = ay.w[y][j], row = ay.idx[y][j] * width;
        for (let i = 0; i < ax.idx[x].length; i++) {
          const wgt = wy * ax.w[x][i], p = (row + ax.idx[x][i]) * 4;
          r += wgt * rgba[p];
          g += wgt * rgba[p + 1];
          b += wgt * rgba[p + 2];
        }
      }
      const q = offset + y * size + x;
      const clamp = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
      if (channels === 1) out[q] = clamp(0.299 * r + 0.587 * g + 0.114 * b);
      else {
        out[q] = clamp(r);
        out[q + plane] = clamp(g);
        out[q + 2 * plane] = clamp(b);
      }
    }
  }
}
