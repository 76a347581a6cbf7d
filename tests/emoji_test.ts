/**
 * The emoji dataset from a fixture package the test writes (emoji.json and 64 px PNGs): base
 * emoji only, small categories dropped, alpha composited on white, a held-out 10% per class, the
 * cache file round trip, and loading from the cache without fetching. Never downloads.
 */
import { join } from "node:path";
import { Image } from "imagescript";
import {
  decodeEmojiCache,
  emojiDatasets,
  type EmojiMeta,
  encodeEmojiCache,
  MIN_EMOJI_PER_CLASS,
  selectEmoji,
} from "../src/data/emoji.ts";
import { convertEmojiPackage, loadEmoji } from "../src/io/emoji.ts";
import { loadDataset } from "../src/io/datasets.ts";
import { holdOut } from "../src/data/split.ts";
import { ArrayDataset } from "../src/data/dataset.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Colour and alpha of fixture image i: its left half is transparent. */
const colour = (i: number) => [(37 * i) % 256, (91 * i + 40) % 256, (13 * i + 200) % 256];
const alpha = (i: number) => 55 + (i * 29) % 200;

/**
 * A package folder: "Beta" (20 emoji, first in sort order), "Alpha" (22), "Tiny" (3, dropped),
 * one emoji without a Google image, and skin variations whose images are absent.
 */
async function writePackage(): Promise<{ dir: string; meta: EmojiMeta[] }> {
  const dir = fixtureDir = await Deno.makeTempDir({ prefix: "flowgpu_emoji_pkg_" });
  await Deno.mkdir(join(dir, "img", "google", "64"), { recursive: true });
  const meta: (EmojiMeta & { skin_variations?: unknown })[] = [];
  const cats = [...Array(20).fill("Beta"), ...Array(22).fill("Alpha"), ...Array(3).fill("Tiny")];
  for (let i = 0; i < cats.length; i++) {
    const unified = (0x1f300 + i).toString(16).toUpperCase();
    meta.push({
      unified,
      short_name: `e${i}`,
      image: `${unified.toLowerCase()}.png`,
      category: cats[i],
      // Interleave Alpha's sort orders after Beta's first one.
      sort_order: cats[i] === "Beta" ? 2 * i : 2 * (i - 20) + 1,
      has_img_google: true,
      ...(i % 7 === 0 ? { skin_variations: { "1F3FB": { image: `${unified}-1f3fb.png` } } } : {}),
    });
    const img = new Image(64, 64);
    const [r, g, b] = colour(i);
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const o = (y * 64 + x) * 4;
        img.bitmap.set(x < 32 ? [9, 9, 9, 0] : [r, g, b, alpha(i)], o);
      }
    }
    await Deno.writeFile(
      join(dir, "img", "google", "64", `${unified.toLowerCase()}.png`),
      await img.encode(),
    );
  }
  meta.push({
    unified: "1F999",
    image: "1f999.png",
    category: "Alpha",
    sort_order: 999,
    has_img_google: false,
  });
  await Deno.writeTextFile(join(dir, "emoji.json"), JSON.stringify(meta));
  return { dir, meta };
}

let pkg: Promise<{ dir: string; meta: EmojiMeta[] }> | undefined;
const fixture = () => (pkg ??= writePackage());
let fixtureDir: string | undefined;
globalThis.addEventListener("unload", () => {
  if (fixtureDir) Deno.removeSync(fixtureDir, { recursive: true });
});

Deno.test("emoji: base emoji, classes by first appearance, small categories dropped, 10% held out per class", async () => {
  const { meta } = await fixture();
  assert(MIN_EMOJI_PER_CLASS === 20, "the fixture's class sizes assume a minimum of 20");
  const s = selectEmoji(meta);
  assert(s.classNames.join() === "Beta,Alpha", `classes ${s.classNames}`);
  assert(JSON.stringify(s.dropped) === '{"Tiny":3}', `dropped ${JSON.stringify(s.dropped)}`);
  assert(
    s.entries.length === 42,
    `${s.entries.length} entries (the one without an image excluded)`,
  );
  const held = (c: number) => s.entries.filter((e) => e.label === c && e.heldOut).length;
  assert(held(0) === 2 && held(1) === 2, `held out ${held(0)} Beta, ${held(1)} Alpha`);
  // The split depends on the code points only: the same whatever the order of emoji.json.
  const again = selectEmoji(meta.toReversed());
  const names = (x: typeof s) => x.entries.filter((e) => e.heldOut).map((e) => e.unified).sort();
  assert(names(again).join() === names(s).join(), "held-out split depends on the file order");
});

Deno.test("emoji: conversion composites on white, resamples, and the cache file round-trips", async () => {
  const { dir } = await fixture();
  const size = 8;
  const c = await convertEmojiPackage(dir, size);
  assert(c.labels.length === 42 && c.pixels.length === 42 * 3 * size * size, "sizes");
  const sel = selectEmoji(JSON.parse(await Deno.readTextFile(join(dir, "emoji.json"))));
  for (const j of [0, 17, 41]) {
    const i = Number.parseInt(sel.entries[j].unified, 16) - 0x1f300; // fixture index
    const a = alpha(i) / 255, rgb = colour(i);
    for (let ch = 0; ch < 3; ch++) {
      const plane = c.pixels.subarray((j * 3 + ch) * size * size, (j * 3 + ch + 1) * size * size);
      assert(
        plane[0] === 255 && plane[3 * size + 3] === 255,
        `image ${j}: transparent half not white`,
      );
      const want = Math.round(rgb[ch] * a + 255 * (1 - a));
      const got = plane[5 * size + 6];
      assert(Math.abs(got - want) <= 1, `image ${j} channel ${ch}: ${got}, composite ${want}`);
    }
  }
  const bytes = encodeEmojiCache(c);
  const header = new DataView(bytes.buffer).getUint32(8, true);
  assert(bytes.length === 12 + header + 42 * (3 * size * size + 2), `cache size ${bytes.length}`);
  const d = decodeEmojiCache(bytes);
  assert(d.classNames.join() === "Beta,Alpha" && d.dropped.Tiny === 3, "header");
  assert(d.pixels.every((v, i) => v === c.pixels[i]), "pixels differ after the round trip");
  const { train, heldOut } = emojiDatasets(d);
  assert(train.length === 38 && heldOut.length === 4, `split ${train.length}/${heldOut.length}`);
  assert(train.classNames?.join() === "Beta,Alpha" && train.numClasses === 2, "class names");
  const im = heldOut.get(0).image;
  assert(im.every((v) => v >= -1 && v <= 1) && im[0] === 1, "images in [-1, 1], white = 1");
  // Corruption is a one-line error that says what to do.
  let err = "";
  try {
    decodeEmojiCache(bytes.subarray(0, bytes.length - 5), "x.bin");
  } catch (e) {
    err = (e as Error).message;
  }
  assert(/^x\.bin: .*delete it/.test(err) && !err.includes("\n"), `error: ${err}`);
});

Deno.test("emoji: the first load builds the cache, later loads read it without fetching", async () => {
  const { dir } = await fixture();
  const cacheDir = await Deno.makeTempDir({ prefix: "flowgpu_emoji_cache_" });
  let fetched = 0;
  const a = await loadEmoji({
    dir: cacheDir,
    imageSize: 8,
    fetchPackage: () => {
      fetched++;
      return Promise.resolve(dir);
    },
  });
  assert(a.built && fetched === 1 && a.path === join(cacheDir, "emoji_8.bin"), "first load");
  const b = await loadEmoji({
    dir: cacheDir,
    imageSize: 8,
    fetchPackage: () => Promise.reject(new Error("must not fetch")),
  });
  assert(!b.built && b.train.length === 38 && b.heldOut.length === 4, "second load");
  // --dataset emoji through loadDataset: the training split, from the cache.
  const ds = await loadDataset("emoji", cacheDir, { imageSize: 8, patchSize: 2 });
  assert(ds.length === 38 && ds.channels === 3 && ds.imageSize === 8, "loadDataset emoji");
  await Deno.remove(cacheDir, { recursive: true });
});

Deno.test("holdOut: a fixed 10% whatever the seed, disjoint from training", () => {
  const n = 53, per = 4;
  const pixels = Uint8Array.from({ length: n * per }, (_, i) => Math.floor(i / per));
  const ds = new ArrayDataset(pixels, new Int32Array(n), 1, 2, 0);
  const a = holdOut(ds), b = holdOut(ds);
  assert(a.heldOut.length === 5 && a.train.length === 48, "sizes");
  const ids = (d: ArrayDataset) => Array.from({ length: d.length }, (_, i) => d.pixels[i * per]);
  assert(ids(a.heldOut).join() === ids(b.heldOut).join(), "not deterministic");
  const all = [...ids(a.heldOut), ...ids(a.train)].sort((x, y) => x - y);
  assert(all.every((v, i) => v === i), "train and held out do not partition the dataset");
});
