/**
 * The emoji dataset: Noto emoji images of the npm package emoji-datasource-google (base emoji
 * only, no skin-tone variations), classes = the metadata's `category`, categories too small to
 * train on dropped, a held-out 10% per class, alpha composited on white. This module is the
 * web-standard part: choosing the images, compositing, and the cached uint8 file that later runs
 * read (src/io/emoji.ts fetches the package and decodes the PNGs).
 *
 * Cache file: "FGEMOJI1", a u32 little-endian header length, the UTF-8 JSON header, then the
 * pixels (N × 3 × S × S bytes, [C,H,W] per image), labels (N bytes) and split (N bytes: 0 train,
 * 1 held out).
 */
import { ArrayDataset } from "./dataset.ts";
import { mix32 } from "../rng.ts";

/** The npm package (and version) the images come from. */
export const EMOJI_PACKAGE = "emoji-datasource-google@16.0.0";
/** Categories with fewer base emoji are dropped (e.g. "Component": 5 skin-tone swatches). */
export const MIN_EMOJI_PER_CLASS = 20;
export const EMOJI_HELD_OUT = 0.1;
const MAGIC = "FGEMOJI1";

/** The fields of an emoji.json entry this dataset uses. */
export interface EmojiMeta {
  unified: string;
  short_name?: string;
  image: string;
  category: string;
  sort_order: number;
  has_img_google?: boolean;
  skin_variations?: unknown;
}

/** The base emoji chosen for the dataset, in sort order, with their classes. */
export interface EmojiSelection {
  entries: { image: string; name: string; unified: string; label: number; heldOut: boolean }[];
  classNames: string[];
  /** Dropped categories and their sizes. */
  dropped: Record<string, number>;
  /** Kept categories and their sizes. */
  kept: Record<string, number>;
}

/**
 * Base emoji with a Google image, classes in order of first appearance (by sort_order),
 * categories with fewer than `minPerClass` images dropped, and round(10%) of each class held out
 * (the emoji whose hash of the code point sequence is smallest: fixed, whatever the seed).
 */
export function selectEmoji(meta: EmojiMeta[], minPerClass = MIN_EMOJI_PER_CLASS): EmojiSelection {
  if (!Array.isArray(meta)) throw new Error("emoji.json: expected an array of emoji");
  const base = meta.filter((e) => e && e.has_img_google !== false && typeof e.image === "string")
    .toSorted((a, b) => a.sort_order - b.sort_order);
  const counts = new Map<string, number>();
  for (const e of base) counts.set(e.category, (counts.get(e.category) ?? 0) + 1);
  const dropped: Record<string, number> = {}, kept: Record<string, number> = {};
  const classNames: string[] = [];
  for (const [cat, n] of counts) {
    if (n < minPerClass) dropped[cat] = n;
    else {
      kept[cat] = n;
      classNames.push(cat);
    }
  }
  if (classNames.length === 0) {
    throw new Error(`emoji.json: no category has ${minPerClass} or more images`);
  }
  const entries = base.filter((e) => kept[e.category] !== undefined).map((e) => ({
    image: e.image,
    name: e.short_name ?? e.unified,
    unified: e.unified,
    label: classNames.indexOf(e.category),
    heldOut: false,
  }));
  for (let c = 0; c < classNames.length; c++) {
    const members = entries.filter((e) => e.label === c)
      .toSorted((a, b) => hash(a.unified) - hash(b.unified) || (a.unified < b.unified ? -1 : 1));
    const n = Math.round(members.length * EMOJI_HELD_OUT);
    for (const e of members.slice(0, n)) e.heldOut = true;
  }
  return { entries, classNames, dropped, kept };
}

function hash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = mix32(h ^ s.charCodeAt(i));
  return h;
}

/** RGBA pixels alpha-composited on white, in place (alpha set to 255). */
export function compositeOnWhite(rgba: Uint8Array | Uint8ClampedArray): void {
  for (let p = 0; p < rgba.length; p += 4) {
    const a = rgba[p + 3] / 255;
    for (let c = 0; c < 3; c++) rgba[p + c] = Math.round(rgba[p + c] * a + 255 * (1 - a));
    rgba[p + 3] = 255;
  }
}

/** The converted dataset as the cache file stores it. */
export interface EmojiCache {
  source: string;
  imageSize: number;
  classNames: string[];
  dropped: Record<string, number>;
  names: string[];
  /** N × 3 × S × S bytes. */
  pixels: Uint8Array;
  labels: Uint8Array;
  /** 1 = held out. */
  split: Uint8Array;
}

export function encodeEmojiCache(c: EmojiCache): Uint8Array {
  const n = c.labels.length, per = 3 * c.imageSize * c.imageSize;
  if (c.pixels.length !== n * per || c.split.length !== n) {
    throw new Error("emoji cache: pixels, labels and split disagree in length");
  }
  const header = new TextEncoder().encode(JSON.stringify({
    version: 1,
    source: c.source,
    image_size: c.imageSize,
    channels: 3,
    count: n,
    class_names: c.classNames,
    dropped: c.dropped,
    names: c.names,
  }));
  const out = new Uint8Array(8 + 4 + header.length + n * per + 2 * n);
  out.set(new TextEncoder().encode(MAGIC));
  new DataView(out.buffer).setUint32(8, header.length, true);
  let o = 12;
  out.set(header, o);
  o += header.length;
  out.set(c.pixels, o);
  out.set(c.labels, o + n * per);
  out.set(c.split, o + n * per + n);
  return out;
}

export function decodeEmojiCache(bytes: Uint8Array, name = "emoji cache"): EmojiCache {
  const bad = (why: string): never => {
    throw new Error(`${name}: ${why}; delete it to rebuild it (deno task data emoji)`);
  };
  if (bytes.length < 12 || new TextDecoder().decode(bytes.subarray(0, 8)) !== MAGIC) {
    bad("not an emoji cache file");
  }
  const hl = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8, true);
  if (12 + hl > bytes.length) bad("truncated header");
  let h: Record<string, unknown>;
  try {
    h = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hl)));
  } catch {
    return bad("unreadable header");
  }
  const size = h.image_size as number, n = h.count as number;
  const classNames = h.class_names as string[];
  if (
    h.version !== 1 || h.channels !== 3 || !Number.isInteger(size) || !Number.isInteger(n) ||
    !Array.isArray(classNames)
  ) bad("unexpected header");
  const per = 3 * size * size, o = 12 + hl;
  if (bytes.length !== o + n * per + 2 * n) {
    bad(`${bytes.length} bytes, the header describes ${o + n * per + 2 * n}`);
  }
  const labels = bytes.slice(o + n * per, o + n * per + n);
  const split = bytes.slice(o + n * per + n);
  if (labels.some((l) => l >= classNames.length)) bad("a label outside the classes");
  return {
    source: String(h.source),
    imageSize: size,
    classNames,
    dropped: (h.dropped ?? {}) as Record<string, number>,
    names: (h.names ?? []) as string[],
    pixels: bytes.slice(o, o + n * per),
    labels,
    split,
  };
}

/** The training and held-out datasets of a cache (images in [-1, 1], class names attached). */
export function emojiDatasets(c: EmojiCache): { train: ArrayDataset; heldOut: ArrayDataset } {
  const per = 3 * c.imageSize * c.imageSize;
  const part = (held: number) => {
    const idx: number[] = [];
    for (let i = 0; i < c.split.length; i++) if (c.split[i] === held) idx.push(i);
    const pixels = new Uint8Array(idx.length * per), labels = new Uint8Array(idx.length);
    idx.forEach((i, j) => {
      pixels.set(c.pixels.subarray(i * per, (i + 1) * per), j * per);
      labels[j] = c.labels[i];
    });
    return new ArrayDataset(pixels, labels, 3, c.imageSize, c.classNames.length, c.classNames);
  };
  return { train: part(0), heldOut: part(1) };
}
