/**
 * `deno task generate`: sample images from a checkpoint by integrating the flow ODE from noise
 * (t=0) to data (t=1) with classifier-free guidance. Run with --help for the flags.
 */
import { join } from "node:path";
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import { generateImages } from "../src/model/sampler.ts";
import { loadModel } from "../src/io/model_io.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { imageGridPng } from "../src/io/png.ts";
import { SeededRng } from "../src/rng.ts";
import { type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";
import type { Method } from "../src/flow/sample.ts";

const SPECS: Record<string, FlagSpec> = {
  checkpoint: {
    kind: "string",
    help: "checkpoint .safetensors, or a run directory (uses its final.safetensors)",
  },
  num_samples: { kind: "int", help: "number of images (ignored with --class_grid)" },
  class_label: { kind: "int", help: "class of every image (default: random classes)" },
  class_grid: { kind: "boolean", help: "a grid with one row per class" },
  samples_per_class: { kind: "int", help: "images per class row with --class_grid" },
  num_steps: { kind: "int", help: "solver steps (fixed-step solvers)" },
  cfg_scale: { kind: "number", help: "classifier-free guidance scale (1 = no guidance)" },
  guidance_interval: {
    kind: "string",
    help: "guide only for t in [a,b], given as a,b (e.g. 0,0.7)",
  },
  solver: {
    kind: "string",
    help: "euler, heun, midpoint, rk4 or dopri5",
    choices: ["euler", "heun", "midpoint", "rk4", "dopri5"],
  },
  shift: {
    kind: "number",
    help: "SD3 time shift on sigma = 1 - t (>1: more steps near the noise)",
  },
  atol: { kind: "number", help: "dopri5 absolute tolerance" },
  rtol: { kind: "number", help: "dopri5 relative tolerance" },
  seed: { kind: "int", help: "random seed (same seed, same images, whatever --batch)" },
  batch: { kind: "int", help: "images per batched forward" },
  out: { kind: "string", help: "output PNG (grid), or a folder with --separate" },
  separate: { kind: "boolean", help: "write one PNG per image into the --out folder" },
  no_ema: { kind: "boolean", help: "use the raw weights instead of the EMA weights" },
};
const DEFAULTS = {
  num_samples: 16,
  samples_per_class: 8,
  num_steps: 50,
  cfg_scale: 3.0,
  solver: "euler",
  shift: 1,
  atol: 1e-5,
  rtol: 1e-5,
  seed: 0,
  batch: 64,
  out: "samples.png (samples/ with --separate)",
};
const USAGE = "Usage: deno task generate --checkpoint PATH [options]\n\n" +
  "Examples:\n" +
  "  deno task generate --checkpoint runs/NAME --num_samples 16\n" +
  "  deno task generate --checkpoint runs/NAME --num_samples 16 --class_label 5\n" +
  "  deno task generate --checkpoint runs/NAME --class_grid --samples_per_class 8\n" +
  "  deno task generate --checkpoint runs/NAME --num_samples 16 --num_steps 100 --cfg_scale 4.0";

async function resolveCheckpoint(path: string): Promise<string> {
  if (/^(https?|file):/.test(path)) return path;
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st) throw new UsageError(`--checkpoint ${path}: no such file or directory`);
  if (!st.isDirectory) return path;
  for (
    const p of [join(path, "checkpoints", "final.safetensors"), join(path, "final.safetensors")]
  ) {
    if (await Deno.stat(p).catch(() => undefined)) return p;
  }
  throw new UsageError(
    `--checkpoint ${path}: no checkpoints/final.safetensors in that run directory`,
  );
}

async function main() {
  const { values: v, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(helpText(USAGE, SPECS, DEFAULTS));
    return;
  }
  if (!v.checkpoint) {
    throw new UsageError("--checkpoint is required (a .safetensors file or a run directory)");
  }
  const o = { ...DEFAULTS, ...v } as typeof DEFAULTS & Record<string, unknown>;
  for (const key of ["num_samples", "samples_per_class", "num_steps", "batch"] as const) {
    if (!(Number(o[key]) > 0)) throw new UsageError(`--${key} must be positive, got ${o[key]}`);
  }
  let interval: [number, number] | undefined;
  if (v.guidance_interval !== undefined) {
    const parts = String(v.guidance_interval).split(",").map(Number);
    if (parts.length !== 2 || parts.some((x) => !Number.isFinite(x)) || parts[0] > parts[1]) {
      throw new UsageError(
        `--guidance-interval expects a,b with a <= b, got '${v.guidance_interval}'`,
      );
    }
    interval = [parts[0], parts[1]];
  }
  const path = await resolveCheckpoint(String(v.checkpoint));
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  let model;
  try {
    model = await loadModel(path, { ema: !v.no_ema, kernels: k });
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const cfg = model.cfg, K = cfg.num_classes;
  let labels: number[];
  let rows: number, cols: number;
  if (
    v.class_label !== undefined &&
    (K === 0 || Number(v.class_label) < 0 || Number(v.class_label) >= K)
  ) {
    throw new UsageError(
      K === 0
        ? "--class_label: this checkpoint is unconditional (0 classes)"
        : `--class_label ${v.class_label} out of range: this model has classes 0..${K - 1}`,
    );
  }
  if (v.class_grid) {
    if (K === 0) throw new UsageError("--class_grid: this checkpoint is unconditional (0 classes)");
    cols = o.samples_per_class;
    rows = K;
    labels = Array.from({ length: rows * cols }, (_, i) => Math.floor(i / cols));
  } else {
    const n = o.num_samples;
    const rng = new SeededRng(o.seed ^ 0x1abe1);
    labels = Array.from(
      { length: n },
      () => K === 0 ? 0 : v.class_label !== undefined ? Number(v.class_label) : rng.int(K),
    );
    cols = Math.ceil(Math.sqrt(n));
    rows = Math.ceil(n / cols);
  }
  console.log(`adapter: ${describeGpu(gpu)}`);
  console.log(
    `checkpoint ${path} (${
      model.kind === "ema" ? "EMA" : "raw"
    } weights): ${labels.length} images, ` +
      `${o.solver} ${
        o.solver === "dopri5" ? `atol ${o.atol} rtol ${o.rtol}` : `${o.num_steps} steps`
      }, ` +
      `CFG ${K > 0 ? o.cfg_scale : "off (unconditional)"}`,
  );
  const t0 = performance.now();
  const enc = new TextEncoder();
  const { images, nfe } = await generateImages(model, {
    labels,
    steps: o.num_steps,
    cfgScale: o.cfg_scale,
    guidanceInterval: interval,
    method: o.solver as Method,
    shift: o.shift,
    atol: o.atol,
    rtol: o.rtol,
    seed: o.seed,
    batch: o.batch,
    onProgress: (done, total) => {
      const s = (performance.now() - t0) / 1000;
      Deno.stdout.writeSync(
        enc.encode(`\rgenerated ${done}/${total} images  ${(done / s).toFixed(2)} img/s`),
      );
    },
  });
  console.log(`  (${nfe} model evaluations per batch)`);
  const shape = { channels: cfg.in_channels, size: cfg.image_size };
  const per = cfg.in_channels * cfg.image_size ** 2;
  const zoom = cfg.image_size < 64 ? 2 : 1;
  if (v.separate) {
    const dir = v.out ? String(v.out) : "samples";
    await Deno.mkdir(dir, { recursive: true });
    for (let i = 0; i < labels.length; i++) {
      const png = await imageGridPng(images.subarray(i * per, (i + 1) * per), shape, 1, 1, zoom);
      const name = `${String(i).padStart(4, "0")}${K > 0 ? `_class${labels[i]}` : ""}.png`;
      await writeFileAtomic(join(dir, name), png);
    }
    console.log(`wrote ${labels.length} PNGs to ${dir}/`);
  } else {
    const out = v.out ? String(v.out) : "samples.png";
    await writeFileAtomic(out, await imageGridPng(images, shape, rows, cols, zoom));
    console.log(`wrote ${out} (${rows}×${cols} grid${v.class_grid ? ", row r = class r" : ""})`);
  }
}

if (import.meta.main) await runMain(main);
