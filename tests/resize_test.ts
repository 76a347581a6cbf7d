/**
 * Dataset resizing (src/data/resize.ts, `--image-size`) against independent float64 references
 * written in 2-D (not separable): shrinking is the mean of the covered source area (the integral
 * of the piecewise-constant image over each output pixel), enlarging is PyTorch's bilinear
 * (align_corners=False) from the four neighbours; a linear ramp stays linear.
 */
import { resizeDataset, resizeImages } from "../src/data/resize.ts";
import { ArrayDataset } from "../src/data/dataset.ts";
import { loadDataset } from "../src/io/datasets.ts";
import { assert } from "./task_run.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

/** Output pixel (x, y) of an area resize: ∫ over [x·s, (x+1)·s)×[y·s, (y+1)·s) / s². */
function areaRef(img: Float64Array, from: number, size: number, x: number, y: number): number {
  const s = from / size;
  let v = 0;
  for (let j = 0; j < from; j++) {
    const hy = Math.min((y + 1) * s, j + 1) - Math.max(y * s, j);
    if (hy <= 0) continue;
    for (let i = 0; i < from; i++) {
      const hx = Math.min((x + 1) * s, i + 1) - Math.max(x * s, i);
      if (hx > 0) v += hx * hy * img[j * from + i];
    }
  }
  return v / (s * s);
}

/** PyTorch's bilinear (align_corners=False) at output (x, y). */
function bilinearRef(img: Float64Array, from: number, size: number, x: number, y: number): number {
  const src = (o: number) => Math.max(0, (o + 0.5) * from / size - 0.5);
  const sx = src(x), sy = src(y);
  const x0 = Math.floor(sx), y0 = Math.floor(sy);
  const x1 = Math.min(x0 + 1, from - 1), y1 = Math.min(y0 + 1, from - 1);
  const fx = sx - x0, fy = sy - y0;
  const at = (i: number, j: number) => img[j * from + i];
  return (1 - fy) * ((1 - fx) * at(x0, y0) + fx * at(x1, y0)) +
    fy * ((1 - fx) * at(x0, y1) + fx * at(x1, y1));
}

function check(from: number, size: number, channels: number) {
  const rng = new Rng(TEST_SEED ^ (from * 97 + size));
  const n = 2;
  const pixels = Uint8Array.from(
    { length: n * channels * from * from },
    () => Math.floor(rng.uniform() * 256),
  );
  const out = resizeImages(pixels, n, channels, from, size);
  assert(out.length === n * channels * size * size, `${from}→${size}: ${out.length} bytes`);
  const ref = size > from ? bilinearRef : areaRef;
  let worst = 0, off = 0;
  for (let p = 0; p < n * channels; p++) {
    const img = Float64Array.from(pixels.subarray(p * from * from, (p + 1) * from * from));
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const want = ref(img, from, size, x, y), got = out[p * size * size + y * size + x];
        const d = Math.abs(got - want);
        worst = Math.max(worst, d);
        if (d > 0.5 + 1e-9) off++;
      }
    }
  }
  // One rounding of the exact value: within 0.5 (a tie may round either way).
  assert(off === 0 && worst <= 0.5 + 1e-9, `${from}→${size}: ${off} pixels off, worst ${worst}`);
  console.log(`  ${from}→${size} (${channels} channels): worst |got − exact| ${worst.toFixed(3)}`);
}

Deno.test("resize: area when shrinking (28→14, 28→20, 32→7), bilinear when enlarging", () => {
  check(28, 14, 1);
  check(28, 20, 1);
  check(32, 7, 3);
  check(28, 64, 1);
  check(7, 16, 3);
  check(5, 5, 1);
});

Deno.test("resize: a linear ramp enlarged bilinearly stays the ramp inside the border", () => {
  const from = 10, size = 40;
  const ramp = (x: number, y: number) => 20 + 9 * x + 7 * y; // 20..164
  const pixels = Uint8Array.from({ length: from * from }, (_, i) => ramp(i % from, (i / from) | 0));
  const out = resizeImages(pixels, 1, 1, from, size);
  const s = from / size;
  for (let y = 2; y < size - 2; y++) {
    for (let x = 2; x < size - 2; x++) {
      const want = ramp((x + 0.5) * s - 0.5, (y + 0.5) * s - 0.5);
      const got = out[y * size + x];
      assert(Math.abs(got - want) <= 0.5 + 1e-9, `ramp (${x}, ${y}): ${got} vs ${want}`);
    }
  }
});

Deno.test("resize: datasets keep labels and class names; --image-size loads resized", async () => {
  const ds = new ArrayDataset(
    Uint8Array.from({ length: 3 * 2 * 4 * 4 }, (_, i) => i),
    Int32Array.of(1, 0, 1),
    2,
    4,
    2,
    ["a", "b"],
  );
  const r = resizeDataset(ds, 6);
  assert(r.imageSize === 6 && r.length === 3 && r.channels === 2, "resized shape");
  assert(r.get(2).label === 1 && r.classNames?.join() === "a,b", "labels and names kept");
  assert(resizeDataset(ds, 4) === ds, "the same size is the dataset itself");
  const fm = await loadDataset("default", undefined, { imageSize: 16, patchSize: 2 });
  assert(fm.imageSize === 16 && fm.get(0).image.length === 256, `default at 16: ${fm.imageSize}`);
  let threw = "";
  try {
    await loadDataset("default", undefined, { imageSize: 15, patchSize: 2 });
  } catch (e) {
    threw = (e as Error).message;
  }
  assert(/image size 15 is not divisible by the patch size 2/.test(threw), threw);
});
