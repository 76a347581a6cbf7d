/**
 * `deno run -A tasks/generate.ts` end to end on the CPU adapter with tiny checkpoints written
 * here (random non-zero weights, EMA different from the raw weights): the class grid's size and
 * pixels against `generateImages` in-process, run directories as --checkpoint, --separate,
 * unconditional checkpoints, seed reproducibility across batch sizes (bad arguments:
 * robustness_test.ts).
 */
import { randomWeights } from "./random_weights.ts";
import { join } from "node:path";
import { type DiTConfig, resolveConfig } from "../src/model/config.ts";
import { generateImages, type GenerateOptions } from "../src/model/sampler.ts";
import { Model } from "../src/model/model.ts";
import { encodeCheckpoint } from "../src/io/model_io.ts";
import { SeededRng } from "../src/rng.ts";
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/png.ts
import { Image } from "npm:imagescript@1.3.1";
import { assert, expectOk, runTask } from "./task_run.ts";

const PAD = 2, ZOOM = 2;

const generate = (args: string[]) => runTask("generate", args);

const COND = resolveConfig({ preset: "tiny", image_size: 8, in_channels: 1, num_classes: 3 });
const UNCOND = resolveConfig({ preset: "tiny", image_size: 8, in_channels: 1, num_classes: 0 });

interface Fixture {
  dir: string;
  cond: { path: string; runDir: string; params: Float32Array; ema: Float32Array };
  uncond: { path: string; params: Float32Array };
}

let fixture: Promise<Fixture> | undefined;
/** The checkpoints, written once per test process. */
function fixtures(): Promise<Fixture> {
  fixture ??= (async () => {
    const rng = new Rng(TEST_SEED ^ 0x6e4e);
    const dir = await Deno.makeTempDir({ prefix: "flowgpu_generate_" });
    const params = randomWeights(COND, rng, 0.5).flat, ema = randomWeights(COND, rng, 0.5).flat;
    const bytes = encodeCheckpoint({ cfg: COND, params, ema });
    const path = join(dir, "cond.safetensors");
    await Deno.writeFile(path, bytes);
    const runDir = join(dir, "run");
    await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
    await Deno.writeFile(join(runDir, "checkpoints", "final.safetensors"), bytes);
    const uparams = randomWeights(UNCOND, rng, 0.5).flat;
    const upath = join(dir, "uncond.safetensors");
    await Deno.writeFile(upath, encodeCheckpoint({ cfg: UNCOND, params: uparams }));
    return {
      dir,
      cond: { path, runDir, params, ema },
      uncond: { path: upath, params: uparams },
    };
  })();
  return fixture;
}

/** generateImages in this process, with the weights uploaded to a fresh model. */
async function sampleHere(
  cfg: DiTConfig,
  weights: Float32Array,
  opts: GenerateOptions,
): Promise<Float32Array> {
  const model = new Model(await kernels(), cfg, { weights });
  try {
    return (await generateImages(model, opts)).images;
  } finally {
    model.params.buffer.destroy();
  }
}

/**
 * Check a decoded grid PNG: its size, white padding, each cell against `images` (grey, 8-bit,
 * zoomed) within one level, and cells past the last image white.
 */
function checkGrid(
  png: Image,
  images: Float32Array,
  rows: number,
  cols: number,
  H: number,
  what: string,
): void {
  const cell = H * ZOOM, n = images.length / (H * H);
  const W = cols * cell + (cols + 1) * PAD, Ht = rows * cell + (rows + 1) * PAD;
  assert(
    png.width === W && png.height === Ht,
    `${what}: ${png.width}×${png.height}, want ${W}×${Ht}`,
  );
  const bmp = png.bitmap;
  const at = (x: number, y: number) => bmp[(y * W + x) * 4];
  const inCell = (x: number, y: number) => {
    const cx = (x - PAD) % (cell + PAD), cy = (y - PAD) % (cell + PAD);
    return x >= PAD && y >= PAD && cx < cell && cy < cell && x < W - PAD && y < Ht - PAD;
  };
  for (let y = 0; y < Ht; y++) {
    for (let x = 0; x < W; x++) {
      if (!inCell(x, y)) assert(at(x, y) === 255, `${what}: padding at (${x}, ${y})`);
    }
  }
  let worst = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      for (let y = 0; y < cell; y++) {
        for (let x = 0; x < cell; x++) {
          const v = i < n ? images[i * H * H + Math.floor(y / ZOOM) * H + Math.floor(x / ZOOM)] : 1;
          const want = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
          const px = PAD + c * (cell + PAD) + x, py = PAD + r * (cell + PAD) + y;
          worst = Math.max(worst, Math.abs(at(px, py) - want));
        }
      }
    }
  }
  assert(worst <= 1, `${what}: a pixel is ${worst} levels from the in-process sample`);
}

/** The fraction of values inside (−1, 1) (not clipped to black or white in a PNG). */
function unclipped(images: Float32Array): number {
  return images.filter((v) => v > -1 && v < 1).length / images.length;
}

Deno.test("generate task: --class_grid writes rows = classes, matching generateImages", async () => {
  const f = await fixtures();
  const out = join(f.dir, "grid.png");
  const r = await generate([
    "--checkpoint",
    f.cond.path,
    "--class_grid",
    "--samples_per_class",
    "2",
    "--num_steps",
    "3",
    "--out",
    out,
  ]);
  expectOk(r, "--class_grid");
  assert(/EMA weights/.test(r.stdout), `uses the EMA weights by default:\n${r.stdout}`);
  const labels = [0, 0, 1, 1, 2, 2];
  const images = await sampleHere(COND, f.cond.ema, { labels, steps: 3, cfgScale: 3, seed: 0 });
  assert(unclipped(images) > 0.3, `test setup: samples mostly clipped (${unclipped(images)})`);
  checkGrid(await Image.decode(await Deno.readFile(out)), images, 3, 2, 8, "class grid");
  // a run directory is accepted as --checkpoint (its checkpoints/final.safetensors)
  const out2 = join(f.dir, "grid_from_run.png");
  const r2 = await generate([
    "--checkpoint",
    f.cond.runDir,
    "--class_grid",
    "--samples_per_class",
    "2",
    "--num_steps",
    "3",
    "--out",
    out2,
  ]);
  expectOk(r2, "run directory as --checkpoint");
  assert(r2.stdout.includes(join(f.cond.runDir, "checkpoints", "final.safetensors")), r2.stdout);
  // the same pixels give the same PNG bytes, in another process
  const a = await Deno.readFile(out), b = await Deno.readFile(out2);
  assert(a.length === b.length && a.every((x, i) => x === b[i]), "run directory: other bytes");
});

Deno.test("generate task: --separate writes one PNG per image; --no_ema takes the raw weights", async () => {
  const f = await fixtures();
  const dir = join(f.dir, "separate");
  const r = await generate([
    "--checkpoint",
    f.cond.path,
    "--num_samples",
    "3",
    "--num_steps",
    "2",
    "--cfg_scale",
    "1.5",
    "--seed",
    "4",
    "--separate",
    "--no_ema",
    "--out",
    dir,
  ]);
  expectOk(r, "--separate");
  assert(/raw weights/.test(r.stdout), r.stdout);
  // the labels generate.ts draws for --num_samples without --class_label
  const rng = new SeededRng(4 ^ 0x1abe1);
  const labels = [0, 1, 2].map(() => rng.int(3));
  const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  const want = labels.map((l, i) => `${String(i).padStart(4, "0")}_class${l}.png`);
  assert(names.join() === want.join(), `--separate wrote ${names}, want ${want}`);
  const images = await sampleHere(COND, f.cond.params, {
    labels,
    steps: 2,
    cfgScale: 1.5,
    seed: 4,
  });
  for (let i = 0; i < 3; i++) {
    const png = await Image.decode(await Deno.readFile(join(dir, names[i])));
    checkGrid(png, images.subarray(i * 64, (i + 1) * 64), 1, 1, 8, names[i]);
  }
});

Deno.test("generate task: an unconditional checkpoint samples without guidance", async () => {
  const f = await fixtures();
  const out = join(f.dir, "uncond.png");
  const r = await generate([
    "--checkpoint",
    f.uncond.path,
    "--num_samples",
    "3",
    "--num_steps",
    "2",
    "--cfg_scale",
    "4",
    "--out",
    out,
  ]);
  expectOk(r, "unconditional");
  assert(/CFG off \(unconditional\)/.test(r.stdout), r.stdout);
  assert(/raw weights/.test(r.stdout), `no EMA in this checkpoint:\n${r.stdout}`);
  const plain = await sampleHere(UNCOND, f.uncond.params, {
    labels: [0, 0, 0],
    steps: 2,
    cfgScale: 1,
  });
  const guided = await sampleHere(UNCOND, f.uncond.params, {
    labels: [0, 0, 0],
    steps: 2,
    cfgScale: 4,
  });
  assertClose("unconditional: cfgScale ignored", guided, plain, 0);
  // 3 images: a 2×2 grid, the last cell empty (white)
  checkGrid(await Image.decode(await Deno.readFile(out)), plain, 2, 2, 8, "unconditional grid");
});

Deno.test("generateImages: the same seed gives the same images at batch 1 and batch 3", async () => {
  const f = await fixtures();
  const labels = [2, 0, 1, 3]; // 3 = the null label (unguided draw)
  const opts = { labels, steps: 3, cfgScale: 2.5, seed: 11 };
  const one = await sampleHere(COND, f.cond.ema, { ...opts, batch: 1 });
  const three = await sampleHere(COND, f.cond.ema, { ...opts, batch: 3 });
  const e = assertClose("batch 1 vs batch 3", three, one, 1e-5);
  const other = await sampleHere(COND, f.cond.ema, { ...opts, batch: 3, seed: 12 });
  let diff = 0;
  for (let i = 0; i < one.length; i++) diff = Math.max(diff, Math.abs(other[i] - one[i]));
  assert(diff > 0.1, `seed 12 gives the images of seed 11 (max difference ${diff})`);
  console.log(`  batch 1 vs 3: relative difference ${e.toExponential(2)}`);
});

Deno.test("generateImages: onStep reads each batch's state; the last is the image", async () => {
  const f = await fixtures();
  const opts = { labels: [2, 0, 1], steps: 3, cfgScale: 2.5, seed: 5, batch: 2 };
  const seen: { first: number; count: number; step: number; t: number; x: Float32Array }[] = [];
  const model = new Model(await kernels(), COND, { weights: f.cond.ema });
  const { images } = await generateImages(model, {
    ...opts,
    onStep: async (s) => void seen.push({ ...s, x: await s.read() }),
  });
  model.params.buffer.destroy();
  const calls = seen.map((s) => `${s.first}+${s.count}@${s.step}:${s.t.toFixed(3)}`).join(" ");
  const want = "0+2@1:0.333 0+2@2:0.667 0+2@3:1.000 2+1@1:0.333 2+1@2:0.667 2+1@3:1.000";
  assert(calls === want, `onStep calls: ${calls}, want ${want}`);
  const per = 64;
  assertClose("batch 1 at t=1", seen[2].x, images.subarray(0, 2 * per), 0);
  assertClose("batch 2 at t=1", seen[5].x, images.subarray(2 * per), 0);
  // One Euler step from the noise: x_{1/3} is not yet the image.
  const x13 = seen[0].x.subarray(0, per);
  assert(x13.some((v, i) => Math.abs(v - images[i]) > 0.05), "the state at t=1/3 is the image");
  const again = await sampleHere(COND, f.cond.ema, opts);
  assertClose("images with and without onStep", images, again, 0);
});

Deno.test("generateImages: repeated calls on one model reuse the graphs (no leak)", async () => {
  const f = await fixtures();
  const k = await kernels();
  const model = new Model(k, COND, { weights: f.cond.ema, kind: "ema" });
  const opts = { labels: [0, 1, 2], steps: 2, cfgScale: 2, seed: 3 };
  const b0 = k.allocatedBytes;
  const first = await generateImages(model, opts);
  const b1 = k.allocatedBytes;
  // concurrent calls share the cached graphs but must not interleave on them
  const [second, third] = await Promise.all([
    generateImages(model, opts),
    generateImages(model, { ...opts, seed: 4 }),
  ]);
  const b2 = k.allocatedBytes;
  model.params.buffer.destroy();
  const perCall = (b2 - b1) / 2;
  console.log(
    `  first call allocated ${(b1 - b0) / 1e3} kB, later calls ${perCall / 1e3} kB each`,
  );
  assert(perCall < (b1 - b0) / 4, `each call allocates ${perCall} bytes (first ${b1 - b0})`);
  assertClose("second call", second.images, first.images, 0);
  const alone = await sampleHere(COND, f.cond.ema, { ...opts, seed: 4 });
  assertClose("concurrent call", third.images, alone, 0);
});
