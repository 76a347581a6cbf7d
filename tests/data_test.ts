/** Datasets (IDX, CIFAR-10 binary, image folders, the embedded subset) and the Batcher. */
import { Image } from "imagescript";
import { augmentInto, type Batch, Batcher, type Dataset } from "../src/data/dataset.ts";
import { encodeIdx, fashionMnistFromBytes, gzip, parseIdx } from "../src/data/fashion_mnist.ts";
import { cifar10FromBytes } from "../src/data/cifar10.ts";
import { loadDataset } from "../src/io/datasets.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

async function assertRejects(f: () => Promise<unknown> | unknown, pattern: RegExp) {
  let err: Error | undefined;
  try {
    await f();
  } catch (e) {
    err = e as Error;
  }
  assert(err, `expected an error matching ${pattern}`);
  assert(pattern.test(err.message), `error "${err.message}" does not match ${pattern}`);
}

const px = (b: number) => b / 127.5 - 1;

Deno.test("IDX: Fashion-MNIST from files the test writes, gzipped or not", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const n = 5, s = 28;
    const pixels = new Uint8Array(n * s * s).map((_, i) => (i * 7) % 256);
    const labels = Uint8Array.from([3, 0, 9, 1, 3]);
    await Deno.writeFile(
      `${dir}/train-images-idx3-ubyte.gz`,
      await gzip(encodeIdx([n, s, s], pixels)),
    );
    await Deno.writeFile(`${dir}/train-labels-idx1-ubyte.gz`, await gzip(encodeIdx([n], labels)));
    const ds = await loadDataset("fashion-mnist", dir);
    assert(ds.length === 5 && ds.imageSize === 28 && ds.channels === 1, "shape");
    assert(ds.numClasses === 10, "classes");
    for (const i of [0, 2, 4]) {
      const { image, label } = ds.get(i);
      assert(label === labels[i], `label ${i}`);
      for (const j of [0, 1, 400, 783]) {
        assert(image[j] === Math.fround(px(pixels[i * 784 + j])), `pixel ${i},${j}`);
      }
    }
    // Raw (not gzipped) IDX parses too; header fields are big-endian.
    const raw = encodeIdx([n, s, s], pixels);
    assert(raw[2] === 8 && raw[3] === 3 && raw[7] === 5 && raw[11] === 28, "IDX header");
    const ds2 = await fashionMnistFromBytes(raw, encodeIdx([n], labels));
    assert(ds2.get(4).image[783] === ds.get(4).image[783], "raw IDX");
    // Missing file named.
    await Deno.remove(`${dir}/train-labels-idx1-ubyte.gz`);
    await assertRejects(() => loadDataset("fashion-mnist", dir), /train-labels-idx1-ubyte\.gz/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("IDX: bad magic, wrong dimensions, truncation and label mismatch give clear errors", async () => {
  const good = encodeIdx([2, 28, 28], new Uint8Array(2 * 784));
  const bad = good.slice();
  bad[0] = 0x1a;
  await assertRejects(() => parseIdx(bad, "x.idx"), /x\.idx: bad IDX magic number 0x1a000803/);
  const float = good.slice();
  float[2] = 0x0d;
  await assertRejects(() => parseIdx(float, "f.idx"), /element type 0x0d/);
  await assertRejects(
    () =>
      fashionMnistFromBytes(encodeIdx([2], new Uint8Array(2)), encodeIdx([2], new Uint8Array(2))),
    /1 dimensions, expected 3/,
  );
  await assertRejects(() => parseIdx(good.subarray(0, 100), "t.idx"), /t\.idx.*truncated/);
  await assertRejects(
    () => fashionMnistFromBytes(good, encodeIdx([3], new Uint8Array(3))),
    /2 images but .* has 3 labels/,
  );
  await assertRejects(
    () => fashionMnistFromBytes(new Uint8Array([0x1f, 0x8b, 1, 2, 3]), good),
    /gzip/,
  );
});

function cifarRecord(label: number, seed: number): Uint8Array {
  const r = new Uint8Array(3073);
  r[0] = label;
  for (let c = 0; c < 3; c++) {
    for (let y = 0; y < 32; y++) {
      for (let x = 0; x < 32; x++) r[1 + c * 1024 + y * 32 + x] = (seed + c * 80 + y * 3 + x) % 256;
    }
  }
  return r;
}

Deno.test("CIFAR-10: binary batches the test writes (placement, channel order, scaling)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const recs: { label: number; seed: number }[] = [];
    for (let f = 1; f <= 5; f++) {
      const rs = [0, 1].map((r) => ({ label: (f * 3 + r) % 10, seed: f * 17 + r * 5 }));
      recs.push(...rs);
      const bytes = new Uint8Array(2 * 3073);
      rs.forEach((r, i) => bytes.set(cifarRecord(r.label, r.seed), i * 3073));
      await Deno.writeFile(`${dir}/data_batch_${f}.bin`, bytes);
    }
    const ds = await loadDataset("cifar10", dir, { patchSize: 4 });
    assert(ds.length === 10 && ds.channels === 3 && ds.imageSize === 32, "shape");
    for (let i = 0; i < 10; i++) {
      const { image, label } = ds.get(i);
      assert(label === recs[i].label, `label ${i}`);
      for (const [c, y, x] of [[0, 0, 0], [0, 0, 31], [1, 5, 7], [2, 31, 0], [2, 31, 31]]) {
        const want = px((recs[i].seed + c * 80 + y * 3 + x) % 256);
        assert(image[c * 1024 + y * 32 + x] === Math.fround(want), `pixel ${i} (${c},${y},${x})`);
      }
    }
    // Extremes map to exactly ±1.
    const r = cifarRecord(0, 0);
    r[1] = 0;
    r[2] = 255;
    const one = cifar10FromBytes([r]).get(0).image;
    assert(one[0] === -1 && one[1] === 1, "scaling to [-1,1]");
    await assertRejects(
      () => cifar10FromBytes([new Uint8Array(3073 * 2 + 5)], ["b.bin"]),
      /b\.bin: 6151 bytes is not a multiple of the 3073-byte/,
    );
    await assertRejects(() => loadDataset("cifar10", dir, { patchSize: 5 }), /not divisible/);
    await Deno.remove(`${dir}/data_batch_3.bin`);
    await Deno.remove(`${dir}/data_batch_5.bin`);
    await assertRejects(() => loadDataset("cifar10", dir), /data_batch_3\.bin.*data_batch_5\.bin/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function writePng(
  path: string,
  w: number,
  h: number,
  color: (x: number, y: number) => number,
) {
  const img = new Image(w, h);
  for (let y = 1; y <= h; y++) {
    for (let x = 1; x <= w; x++) img.setPixelAt(x, y, color(x - 1, y - 1));
  }
  await Deno.writeFile(path, await img.encode());
}

const rgba = (r: number, g: number, b: number) => ((r << 24) | (g << 16) | (b << 8) | 255) >>> 0;

Deno.test("image folder: classes, resizing, channel order, unconditional, errors", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/b_dogs`);
    await Deno.mkdir(`${dir}/a_cats`);
    // 8×8: left half (10, 20, 30), right half (200, 100, 0).
    const halves = (x: number) => x < 4 ? rgba(10, 20, 30) : rgba(200, 100, 0);
    await writePng(`${dir}/a_cats/1.png`, 8, 8, halves);
    // 12×8 (wider): centre crop drops 2 columns each side; the crop is uniform grey 90.
    await writePng(
      `${dir}/a_cats/2.png`,
      12,
      8,
      (x) => x < 2 || x >= 10 ? rgba(255, 0, 0) : rgba(90, 90, 90),
    );
    await writePng(`${dir}/b_dogs/x.png`, 8, 8, () => rgba(0, 0, 255));
    await Deno.writeTextFile(`${dir}/b_dogs/notes.txt`, "not an image");
    const ds = await loadDataset("folder", dir, { imageSize: 4, patchSize: 2 });
    assert(ds.length === 3 && ds.numClasses === 2 && ds.channels === 3, "folder shape");
    assert(ds.classNames?.join() === "a_cats,b_dogs", "class names sorted");
    const a = ds.get(0);
    assert(a.label === 0, "label 0");
    const at = (im: Float32Array, c: number, y: number, x: number) => im[c * 16 + y * 4 + x];
    for (const [c, left, right] of [[0, 10, 200], [1, 20, 100], [2, 30, 0]]) {
      assert(Math.abs(at(a.image, c, 1, 0) - px(left)) < 1e-6, `channel ${c} left`);
      assert(Math.abs(at(a.image, c, 3, 3) - px(right)) < 1e-6, `channel ${c} right`);
    }
    assert(ds.get(1).image.every((v) => Math.abs(v - px(90)) < 1e-6), "centre crop");
    const d = ds.get(2);
    assert(d.label === 1 && at(d.image, 2, 0, 0) === 1 && at(d.image, 0, 0, 0) === -1, "blue dog");
    // Grayscale.
    const g = await loadDataset("folder", dir, { imageSize: 4, channels: 1 });
    assert(g.channels === 1 && g.get(2).image.length === 16, "grayscale");

    // Unconditional: images directly in the folder.
    const flat = `${dir}/flat`;
    await Deno.mkdir(flat);
    await assertRejects(() => loadDataset("folder", flat), /flat is empty: it contains no PNG/);
    await writePng(`${flat}/p.png`, 6, 6, () => rgba(0, 255, 0));
    const u = await loadDataset("folder", flat, { imageSize: 3 });
    assert(u.numClasses === 0 && u.length === 1 && u.get(0).label === 0, "unconditional");
    await Deno.writeFile(`${flat}/broken.png`, new Uint8Array([1, 2, 3, 4, 5]));
    await assertRejects(() => loadDataset("folder", flat, { imageSize: 3 }), /broken\.png/);
    await assertRejects(
      () => loadDataset("folder", `${dir}/a_cats`, { imageSize: 30, patchSize: 4 }),
      /image size 30 is not divisible by the patch size 4/,
    );
    await Deno.mkdir(`${dir}/c_empty`);
    await assertRejects(() => loadDataset("folder", dir, { imageSize: 4 }), /c_empty contains no/);
    await assertRejects(() => loadDataset("folder", `${dir}/nope`), /cannot read/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** A dataset whose image i is filled with i/1000 (but for a marker on the left column). */
function indexDataset(n: number, size = 3): Dataset {
  return {
    length: n,
    imageSize: size,
    channels: 1,
    numClasses: 10,
    get(i) {
      const image = new Float32Array(size * size).fill(i / 1000);
      for (let y = 0; y < size; y++) image[y * size] = -1; // left column marks orientation
      return { image, label: i % 10 };
    },
  };
}

function batchesEqual(a: Batch, b: Batch) {
  return a.indices.every((v, i) => v === b.indices[i]) &&
    a.labels.every((v, i) => v === b.labels[i]) && a.images.every((v, i) => v === b.images[i]);
}

Deno.test("Batcher: each index once per epoch, seeded order, exact resume mid-epoch", () => {
  const n = 50, bs = 7;
  const ds = indexDataset(n);
  const b = new Batcher(ds, { seed: TEST_SEED });
  const drawn: number[] = [];
  for (let i = 0; i < 22; i++) {
    const batch = b.next(bs);
    assert(batch.images.length === bs * 9 && batch.labels.length === bs, "batch shape");
    batch.indices.forEach((idx, j) => {
      assert(batch.labels[j] === idx % 10, "label follows index");
      assert(batch.images[j * 9 + 1] === Math.fround(idx / 1000), "image follows index");
    });
    drawn.push(...batch.indices);
  }
  for (let e = 0; e < 3; e++) {
    const epoch = drawn.slice(e * n, (e + 1) * n).sort((x, y) => x - y);
    assert(epoch.every((v, i) => v === i), `epoch ${e} is not a permutation`);
  }
  assert(b.state().epoch === 3 && b.state().position === 22 * bs - 3 * n, "state counts");
  const first = drawn.slice(0, n), second = drawn.slice(n, 2 * n);
  assert(first.some((v, i) => v !== second[i]), "epochs are reshuffled");

  const same = new Batcher(ds, { seed: TEST_SEED });
  const other = new Batcher(ds, { seed: TEST_SEED + 1 });
  const s1 = same.next(n), o1 = other.next(n);
  assert(s1.indices.every((v, i) => v === drawn[i]), "same seed, same order");
  assert(o1.indices.some((v, i) => v !== drawn[i]), "other seed, other order");

  // Save mid-epoch (position 3·7 = 21 of 50), resume in a fresh batcher (state through JSON).
  for (const [flip, shift] of [[false, 0], [true, 0], [false, 1], [true, 1]] as const) {
    const a = new Batcher(ds, { seed: TEST_SEED ^ 9, flip, shift });
    for (let i = 0; i < 3; i++) a.next(bs);
    const saved = JSON.parse(JSON.stringify(a.state()));
    assert(saved.position === 21 && saved.epoch === 0, "mid-epoch state");
    const rest = Array.from({ length: 12 }, () => a.next(bs));
    const r = new Batcher(ds, { seed: 1, flip, shift });
    r.restore(saved);
    const resumed = Array.from({ length: 12 }, () => r.next(bs));
    assert(
      rest.every((x, i) => batchesEqual(x, resumed[i])),
      `resume reproduces (flip ${flip}, shift ${shift})`,
    );
  }
});

Deno.test("Batcher: seeded horizontal flip mirrors about half the images", () => {
  const ds = indexDataset(400, 4);
  const b = new Batcher(ds, { seed: TEST_SEED, flip: true });
  const { images } = b.next(400);
  let flipped = 0;
  for (let i = 0; i < 400; i++) {
    const im = images.subarray(i * 16, (i + 1) * 16);
    const left = im[0] === -1, right = im[3] === -1;
    assert(left !== right, "each image is either original or mirrored");
    if (right) flipped++;
  }
  assert(flipped > 150 && flipped < 250, `flipped ${flipped} of 400`);
  const plain = new Batcher(ds, { seed: TEST_SEED }).next(400).images;
  for (let i = 0; i < 400; i++) assert(plain[i * 16] === -1, "no flip unless asked");
});

Deno.test("Batcher: seeded shifts (edge pixels repeated), each of (2s+1)² offsets, with flips", async () => {
  // Random pixels, so exactly one (flip, dx, dy) reproduces each output image.
  const S = 6, C = 2, n = 500, s = 2;
  const ds: Dataset = {
    length: n,
    imageSize: S,
    channels: C,
    numClasses: 1,
    get(i) {
      const rng = new Rng(TEST_SEED + i);
      return { image: Float32Array.from({ length: C * S * S }, () => rng.uniform()), label: 0 };
    },
  };
  // The reference: out(c, y, x) = in(c, clamp(y − dy), clamp(x − dx)), after a mirror x → S−1−x.
  const clamp = (v: number) => Math.min(S - 1, Math.max(0, v));
  const transformed = (im: Float32Array, f: boolean, dx: number, dy: number) => {
    const out = new Float32Array(C * S * S);
    for (let c = 0; c < C; c++) {
      for (let y = 0; y < S; y++) {
        for (let x = 0; x < S; x++) {
          const sx = clamp(x - dx), sy = clamp(y - dy);
          out[(c * S + y) * S + x] = im[(c * S + sy) * S + (f ? S - 1 - sx : sx)];
        }
      }
    }
    return out;
  };
  for (const flip of [false, true]) {
    const { images, indices } = new Batcher(ds, { seed: TEST_SEED, flip, shift: s }).next(n);
    const count = new Map<string, number>();
    let flipped = 0;
    for (let b = 0; b < n; b++) {
      const got = images.subarray(b * C * S * S, (b + 1) * C * S * S);
      const src = ds.get(indices[b]).image;
      const hits: string[] = [];
      for (const f of flip ? [false, true] : [false]) {
        for (let dy = -s; dy <= s; dy++) {
          for (let dx = -s; dx <= s; dx++) {
            const want = transformed(src, f, dx, dy);
            if (want.every((v, j) => v === got[j])) hits.push(`${f} ${dx} ${dy}`);
          }
        }
      }
      assert(hits.length === 1, `image ${b}: ${hits.length} transforms match (flip ${flip})`);
      const [f, dx, dy] = hits[0].split(" ");
      if (f === "true") flipped++;
      count.set(`${dx} ${dy}`, (count.get(`${dx} ${dy}`) ?? 0) + 1);
    }
    // 25 offsets, 20 expected each: all present, none far off a uniform draw.
    assert(count.size === 25, `${count.size} of 25 offsets drawn (flip ${flip})`);
    for (const [k, c] of count) assert(c >= 5 && c <= 40, `offset ${k} drawn ${c} times of ${n}`);
    if (flip) assert(flipped > 200 && flipped < 300, `flipped ${flipped} of ${n}`);
  }
  // The documented direction: positive dx moves content right, positive dy down.
  const grid = Float32Array.from({ length: 9 }, (_, i) => i), moved = new Float32Array(10);
  augmentInto(grid, 1, 3, 1, -1, moved, 1);
  assert(moved.join() === "0,3,3,4,6,6,7,6,6,7", `shift (1, -1) of 0..8: ${moved.join()}`);
  await assertRejects(
    () => new Batcher(ds, { shift: 6 }),
    /shift 6 must be an integer in \[0, 5\]/,
  );
});

Deno.test("embedded Fashion-MNIST subset: 6000 images, 600 per class", async () => {
  const ds = await loadDataset("default", undefined, { patchSize: 2 });
  assert(ds.length === 6000 && ds.imageSize === 28 && ds.channels === 1, "subset shape");
  const counts = new Array(10).fill(0);
  let min = Infinity, max = -Infinity;
  const rng = new Rng(TEST_SEED);
  for (let i = 0; i < ds.length; i++) counts[ds.get(i).label]++;
  for (let k = 0; k < 20; k++) {
    for (const v of ds.get(Math.floor(rng.uniform() * ds.length)).image) {
      min = Math.min(min, v);
      max = Math.max(max, v);
    }
  }
  assert(counts.every((c) => c === 600), `per-class counts ${counts}`);
  assert(min >= -1 && max <= 1 && max > min, "pixels in [-1,1]");
  await assertRejects(() => loadDataset("default", undefined, { patchSize: 3 }), /not divisible/);
});
