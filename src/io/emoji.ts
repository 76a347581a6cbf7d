/**
 * The emoji dataset on disk (Deno): fetch the npm package emoji-datasource-google through Deno's
 * npm support (not a dependency of this project: it is ~74 MB and only needed once), convert it
 * to the cached uint8 file of src/data/emoji.ts, and load that file on later runs. Only the
 * cache file is needed after the first run (it is what travels to another machine).
 */
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type DecodedImage, decodeImage } from "./image_decode.ts";
import {
  compositeOnWhite,
  decodeEmojiCache,
  EMOJI_PACKAGE,
  type EmojiCache,
  emojiDatasets,
  type EmojiMeta,
  encodeEmojiCache,
  selectEmoji,
} from "../data/emoji.ts";
import type { ArrayDataset } from "../data/dataset.ts";
import { resampleInto } from "./datasets.ts";
import { writeFileAtomic } from "./atomic_write.ts";

/** The cache folder: data/emoji/ of this checkout (or of the working directory). */
export function defaultEmojiDir(): string {
  const url = new URL("../../data/emoji/", import.meta.url);
  return url.protocol === "file:" ? fileURLToPath(url) : join(Deno.cwd(), "data", "emoji");
}

/** The cache file's name for an image size. */
export function emojiCacheName(size: number): string {
  return `emoji_${size}.bin`;
}

/**
 * The package's folder, fetched into Deno's npm cache if it is not there yet: `deno info` on an
 * npm: specifier downloads the package and reports its local path. No lock file or node_modules
 * is touched.
 */
export async function fetchEmojiPackage(): Promise<string> {
  const spec = `npm:${EMOJI_PACKAGE}/emoji.json`;
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--no-lock", "--node-modules-dir=none", spec],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
  } catch (e) {
    throw new Error(`cannot run deno to fetch ${spec}: ${(e as Error).message}`);
  }
  const fail = (why: string): never => {
    throw new Error(
      `could not fetch ${spec} through Deno's npm support (${why}); check access to the npm ` +
        `registry, or copy a converted cache (data/emoji/emoji_32.bin) and pass its folder as --data`,
    );
  };
  if (!out.success) {
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").pop() ?? "";
    fail(err || `deno info exited ${out.code}`);
  }
  let info: { npmPackages?: Record<string, { localPath?: string }> };
  try {
    info = JSON.parse(new TextDecoder().decode(out.stdout));
  } catch {
    return fail("unreadable deno info output");
  }
  const path = info.npmPackages?.[EMOJI_PACKAGE]?.localPath;
  if (!path) return fail("deno info did not report the package's local path");
  return path;
}

/**
 * Convert the package at `pkgDir` (its emoji.json and img/google/64/*.png) to the cache format
 * at `size` pixels: base emoji, composited on white, area-resampled.
 */
export async function convertEmojiPackage(pkgDir: string, size: number): Promise<EmojiCache> {
  if (!Number.isInteger(size) || size < 1 || size > 64) {
    throw new Error(`emoji: image size ${size} must be an integer in 1..64 (the images are 64 px)`);
  }
  let meta: EmojiMeta[];
  const metaPath = join(pkgDir, "emoji.json");
  try {
    meta = JSON.parse(await Deno.readTextFile(metaPath));
  } catch (e) {
    throw new Error(`emoji: cannot read ${metaPath}: ${(e as Error).message}`);
  }
  const sel = selectEmoji(meta);
  const n = sel.entries.length, per = 3 * size * size;
  const pixels = new Uint8Array(n * per);
  const labels = new Uint8Array(n), split = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const e = sel.entries[i];
    const path = join(pkgDir, "img", "google", "64", e.image);
    let img: DecodedImage;
    try {
      img = await decodeImage(await Deno.readFile(path));
    } catch (err) {
      throw new Error(`emoji: cannot read ${path}: ${(err as Error).message}`);
    }
    compositeOnWhite(img.bitmap);
    resampleInto(img.bitmap, img.width, img.height, size, 3, pixels, i * per);
    labels[i] = e.label;
    split[i] = e.heldOut ? 1 : 0;
  }
  return {
    source: EMOJI_PACKAGE,
    imageSize: size,
    classNames: sel.classNames,
    dropped: sel.dropped,
    names: sel.entries.map((e) => e.name),
    pixels,
    labels,
    split,
  };
}

export interface EmojiLoad {
  train: ArrayDataset;
  heldOut: ArrayDataset;
  cache: EmojiCache;
  /** The cache file read (or written). */
  path: string;
  /** True when this call built the cache. */
  built: boolean;
}

/**
 * The emoji dataset at `imageSize` (default 32): read `<dir>/emoji_<size>.bin`, or build it
 * first (fetching the package). `fetchPackage` replaces the download (tests).
 */
export async function loadEmoji(
  opts: {
    dir?: string;
    imageSize?: number;
    fetchPackage?: () => Promise<string>;
    log?: (line: string) => void;
  } = {},
): Promise<EmojiLoad> {
  const size = opts.imageSize ?? 32;
  const dir = opts.dir ?? defaultEmojiDir();
  const path = join(dir, emojiCacheName(size));
  let bytes: Uint8Array | undefined;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) {
      throw new Error(`emoji: cannot read ${path}: ${(e as Error).message}`);
    }
  }
  let built = false;
  let cache: EmojiCache;
  if (bytes) cache = decodeEmojiCache(bytes, path);
  else {
    const log = opts.log ?? (() => {});
    log(`emoji: no ${path} yet; fetching npm:${EMOJI_PACKAGE} (about 74 MB, once)`);
    const pkg = await (opts.fetchPackage ?? fetchEmojiPackage)();
    log(`emoji: converting ${pkg} to ${size}×${size} RGB`);
    cache = await convertEmojiPackage(pkg, size);
    await Deno.mkdir(dir, { recursive: true });
    await writeFileAtomic(path, encodeEmojiCache(cache));
    built = true;
  }
  if (cache.imageSize !== size) {
    throw new Error(`${path}: holds ${cache.imageSize}-pixel images, not ${size}; delete it`);
  }
  const dropped = Object.entries(cache.dropped).map(([n, c]) => `${n} (${c})`).join(", ");
  opts.log?.(
    `emoji: ${cache.labels.length} images in ${cache.classNames.length} classes from ${path}` +
      (dropped ? `; categories too small to train on, dropped: ${dropped}` : ""),
  );
  return { ...emojiDatasets(cache), cache, path, built };
}
