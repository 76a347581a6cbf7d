/**
 * `deno task generate`: sample images from a checkpoint by integrating the flow ODE from noise
 * (t=0) to data (t=1) with classifier-free guidance. Run with --help for the flags.
 */
import { join } from "node:path";
import { describeGpu, getGpu, imageGridPng, Kernels, type OptionTable, SeededRng } from "../mod.ts";
import { type OptionValues, runMain, taskOptions, UsageError } from "./cli.ts";
import {
  checkWritableDir,
  checkWritableFile,
  exitOnSignals,
  firstFreeName,
  writeFileAtomic,
} from "./files.ts";
import { Progress } from "./progress.ts";
import {
  CHECKPOINT_OPTION,
  NO_EMA_OPTION,
  readCheckpoint,
  resolveCheckpoint,
  samplerSettings,
  SAMPLING_OPTIONS,
  samplingPrecision,
  uploadWeights,
} from "./sampling.ts";

const DEFAULT_OUT = "samples.png", DEFAULT_DIR = "samples";

const OPTIONS = {
  checkpoint: CHECKPOINT_OPTION,
  num_samples: {
    type: "int",
    help: "number of images (ignored with --class-grid)",
    default: 16,
    min: 1,
    max: 100_000,
  },
  class_label: { type: "int", help: "class of every image (default: random classes)", min: 0 },
  class_grid: { type: "boolean", help: "a grid with one row per class" },
  samples_per_class: {
    type: "int",
    help: "images per class row with --class-grid",
    default: 8,
    min: 1,
    max: 1000,
  },
  ...SAMPLING_OPTIONS,
  batch: { type: "int", help: "images per batched forward", default: 64, min: 1 },
  out: {
    type: "string",
    help: `output PNG grid, or the folder with --separate (default: the first free name of ` +
      `${DEFAULT_OUT}, samples-2.png, … / ${DEFAULT_DIR}/, ${DEFAULT_DIR}-2/, …)`,
  },
  separate: { type: "boolean", help: "write one PNG per image into the --out folder" },
  no_ema: NO_EMA_OPTION,
  no_quantize: {
    type: "boolean",
    help: "latent models: decode the sampled latents as they are (default: snapped to the " +
      "VQ-VAE's codebook first)",
  },
} satisfies OptionTable;

type Values = OptionValues<typeof OPTIONS>;

const USAGE = "Usage: deno task generate --checkpoint PATH [options]\n\n" +
  "Writes a PNG grid (or one PNG per image with --separate); without --out, a new file each\n" +
  "time: samples.png, then samples-2.png, … (never overwrites). Examples:\n" +
  "  deno task generate --checkpoint runs/latest --num_samples 16\n" +
  "  deno task generate --checkpoint runs/latest --num_samples 16 --class_label 5\n" +
  "  deno task generate --checkpoint runs/latest --class_grid --samples_per_class 8\n" +
  "  deno task generate --checkpoint runs/latest --num_samples 16 --num_steps 100 --cfg_scale 4.0";

/** The labels and grid shape of the images to draw. */
function plan(o: Values, K: number): { labels: number[]; rows: number; cols: number } {
  if (o.class_label !== undefined && (K === 0 || o.class_label >= K)) {
    throw new UsageError(
      K === 0
        ? "--class-label: this checkpoint is unconditional (0 classes)"
        : `--class-label ${o.class_label} out of range: this model has classes 0..${K - 1}`,
    );
  }
  if (o.class_grid) {
    if (K === 0) throw new UsageError("--class-grid: this checkpoint is unconditional (0 classes)");
    const cols = o.samples_per_class;
    return {
      labels: Array.from({ length: K * cols }, (_, i) => Math.floor(i / cols)),
      rows: K,
      cols,
    };
  }
  const n = o.num_samples, rng = new SeededRng(o.seed ^ 0x1abe1);
  const labels = Array.from({ length: n }, () => K === 0 ? 0 : o.class_label ?? rng.int(K));
  const cols = Math.ceil(Math.sqrt(n));
  return { labels, rows: Math.ceil(n / cols), cols };
}

/** The output path, checked writable before any work; the default never overwrites. */
async function outputPath(o: Values): Promise<string> {
  if (o.separate) {
    const dir = o.out ?? await firstFreeName(DEFAULT_DIR);
    await checkWritableDir(dir, `--out ${dir}`).catch((e) => {
      throw new UsageError(e.message);
    });
    return dir;
  }
  if (o.out !== undefined && !/\.png$/i.test(o.out)) {
    throw new UsageError(`--out ${o.out}: the grid is a PNG; give a name ending in .png`);
  }
  const out = o.out ?? await firstFreeName(DEFAULT_OUT);
  await checkWritableFile(out, `--out ${out}`).catch((e) => {
    throw new UsageError(e.message);
  });
  return out;
}

async function main(): Promise<number> {
  const o = taskOptions(USAGE, OPTIONS);
  if (!o) return 0;
  if (!o.checkpoint) {
    throw new UsageError("--checkpoint is required (a .safetensors file or a run directory)");
  }
  const path = await resolveCheckpoint(o.checkpoint);
  const ck = await readCheckpoint(path, !o.no_ema).catch((e) => {
    throw new UsageError(e.message);
  });
  const { cfg } = ck, K = cfg.num_classes;
  if (o.no_quantize && !ck.latent) {
    throw new UsageError("--no-quantize: this checkpoint is a pixel-space model (no VQ-VAE)");
  }
  const { labels, rows, cols } = plan(o, K);
  const out = await outputPath(o);
  exitOnSignals();

  const gpu = await getGpu();
  const precision = samplingPrecision(gpu, o);
  const k = new Kernels(gpu);
  console.log(`adapter: ${describeGpu(gpu)}`);
  const solver = o.solver === "dopri5"
    ? `dopri5 atol ${o.atol} rtol ${o.rtol}`
    : `${o.solver} ${o.num_steps} steps`;
  console.log(
    `checkpoint ${path} (${ck.kind} weights): ${labels.length} images, ${solver}, ` +
      `CFG ${K > 0 ? o.cfg_scale : "off (unconditional)"}, ${precision}`,
  );
  if (ck.latent) {
    const v = ck.latent.vqvae.cfg;
    console.log(
      `latent model: ${cfg.in_channels}×${cfg.image_size}² latents, decoded by its VQ-VAE to ` +
        `${v.in_channels}×${v.image_size}² images (${
          o.no_quantize ? "as sampled" : `snapped to the ${v.codebook_size}-code codebook`
        })`,
    );
  }
  const sampler = uploadWeights(k, ck, { precision, decode: { quantize: !o.no_quantize } });
  const progress = new Progress();
  const t0 = performance.now();
  const { images, nfe, shape: [, channels, size] } = await sampler.generate({
    labels,
    ...samplerSettings(o),
    batch: o.batch,
    onProgress: (done, total) => {
      const s = (performance.now() - t0) / 1000;
      progress.update(
        `generated ${done}/${total} images  ${(done / s).toFixed(2)} img/s`,
        done === total,
      );
    },
  });
  sampler.dispose();
  const batches = Math.ceil(labels.length / Math.min(o.batch, labels.length));
  console.log(
    `${nfe} model evaluations in all (${batches} batch${batches > 1 ? "es" : ""} of up to ` +
      `${Math.min(o.batch, labels.length)} images${
        K > 0 && o.cfg_scale !== 1 ? ", each a guided pair" : ""
      })`,
  );
  const shape = { channels, size }, per = channels * size * size, zoom = size < 64 ? 2 : 1;
  if (o.separate) {
    await Deno.mkdir(out, { recursive: true });
    for (let i = 0; i < labels.length; i++) {
      const png = await imageGridPng(images.subarray(i * per, (i + 1) * per), shape, 1, 1, zoom);
      const name = `${String(i).padStart(4, "0")}${K > 0 ? `_class${labels[i]}` : ""}.png`;
      await writeFileAtomic(join(out, name), png);
    }
    console.log(`wrote ${labels.length} PNGs to ${out}/`);
  } else {
    await writeFileAtomic(out, await imageGridPng(images, shape, rows, cols, zoom));
    console.log(`wrote ${out} (${rows}×${cols} grid${o.class_grid ? ", row r = class r" : ""})`);
    if (o.class_grid && ck.classNames?.length === K) {
      console.log(`rows: ${ck.classNames.map((n, i) => `${i} ${n}`).join(", ")}`);
    }
  }
  return 0;
}

if (import.meta.main) await runMain(main);
