/**
 * `deno task train`: flow-matching training of DiT2D with EMA, checkpoints, exact resume, sample
 * grids, metrics and a loss curve. Run with --help for the flags.
 */
import { basename, dirname, join } from "node:path";
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import {
  type PartialConfig,
  type PresetName,
  PRESETS,
  resolveConfig,
} from "../src/model/config.ts";
import { Trainer, type TrainerState } from "../src/train/trainer.ts";
import {
  CPU_DEFAULTS,
  GPU_DEFAULTS,
  OPTION_HELP,
  type TrainOptions,
} from "../src/train/options.ts";
import { datasetTrainDefaults, loadDataset } from "../src/io/datasets.ts";
import {
  decodeCheckpoint,
  encodeCheckpoint,
  readSource,
  type TrainingCheckpoint,
} from "../src/io/model_io.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { generateImages } from "../src/model/sampler.ts";
import { createModel } from "../src/model/model.ts";
import { imageGridPng, lossCurvePng } from "../src/io/png.ts";
import { convert, type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";

const INT = new Set([
  "image_size",
  "in_channels",
  "hidden_size",
  "depth",
  "num_heads",
  "patch_size",
  "num_classes",
  "batch_size",
  "train_steps",
  "warmup",
  "seed",
  "log_every",
  "sample_every",
  "ckpt_every",
  "num_sampling_steps",
]);
const CHOICES: Record<string, string[]> = {
  preset: ["tiny", "small", "S", "B", "L"],
  lr_schedule: ["constant", "cosine"],
  time_sampling: ["uniform", "logit-normal"],
  dataset: ["default", "fashion-mnist", "cifar10", "folder"],
};
const STRINGS = new Set([
  "preset",
  "lr_schedule",
  "time_sampling",
  "dataset",
  "data",
  "out",
  "name",
  "resume",
]);

const SPECS: Record<string, FlagSpec> = {};
for (const [name, help] of Object.entries(OPTION_HELP)) {
  SPECS[name] = {
    kind: STRINGS.has(name)
      ? "string"
      : INT.has(name)
      ? "int"
      : name === "hflip"
      ? "boolean"
      : "number",
    help,
    choices: CHOICES[name],
    aliases: name === "train_steps" ? ["steps"] : undefined,
  };
}
SPECS.config = { kind: "string", help: "JSON file with any of these options (flags override it)" };

const USAGE = "Usage: deno task train [options]\n\n" +
  "Trains a class-conditional DiT2D by flow matching. With no flags it trains on the embedded\n" +
  "Fashion-MNIST subset: the seed's configuration on a GPU, a small CPU profile on a software\n" +
  "adapter (defaults shown are the GPU ones; the CPU profile: preset tiny, batch 16, lr 3e-3,\n" +
  "400 steps, warmup 50, EMA 0.99, samples every 200 steps, checkpoints every 100).";

/** Options from a --config JSON file, checked like flags. */
async function readConfigFile(path: string): Promise<Partial<TrainOptions>> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    throw new UsageError(`--config ${path}: ${(e as Error).message}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new UsageError(`--config ${path}: expected a JSON object`);
  }
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(json)) {
    const name = key.replaceAll("-", "_");
    const canonical = name === "steps" ? "train_steps" : name;
    const spec = SPECS[canonical];
    if (!spec || canonical === "config") {
      throw new UsageError(`--config ${path}: unknown option "${key}"`);
    }
    out[canonical] = convert(canonical, raw, spec);
  }
  return out as Partial<TrainOptions>;
}

/** The checkpoint to resume from: a file, a run directory, or "auto" (newest under --out). */
async function findResume(resume: string, out: string): Promise<string> {
  const latestIn = async (runDir: string): Promise<string | undefined> => {
    const dir = join(runDir, "checkpoints");
    const files: { path: string; mtime: number }[] = [];
    try {
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile && e.name.endsWith(".safetensors")) {
          const path = join(dir, e.name);
          files.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
        }
      }
    } catch {
      return undefined;
    }
    files.sort((a, b) => b.mtime - a.mtime);
    return files[0]?.path;
  };
  if (resume === "auto") {
    const runs: { dir: string; mtime: number }[] = [];
    try {
      for await (const e of Deno.readDir(out)) {
        if (!e.isDirectory) continue;
        const ck = await latestIn(join(out, e.name));
        if (ck) runs.push({ dir: ck, mtime: (await Deno.stat(ck)).mtime?.getTime() ?? 0 });
      }
    } catch { /* no runs yet */ }
    runs.sort((a, b) => b.mtime - a.mtime);
    if (!runs.length) {
      throw new UsageError(`--resume auto: no checkpoint under ${out}/*/checkpoints/`);
    }
    return runs[0].dir;
  }
  const st = await Deno.stat(resume).catch(() => undefined);
  if (!st) throw new UsageError(`--resume ${resume}: no such file or directory`);
  if (st.isDirectory) {
    const ck = await latestIn(resume);
    if (!ck) {
      throw new UsageError(
        `--resume ${resume}: no checkpoints/*.safetensors in that run directory`,
      );
    }
    return ck;
  }
  return resume;
}

/** Point `<out>/latest` at the run directory (so `--checkpoint runs/latest` names the newest run). */
async function linkLatest(runDir: string): Promise<void> {
  const link = join(dirname(runDir), "latest");
  if (basename(runDir) === "latest") return;
  try {
    const st = await Deno.lstat(link).catch(() => undefined);
    if (st && !st.isSymlink) return; // a real directory named "latest": leave it alone
    if (st) await Deno.remove(link);
    await Deno.symlink(basename(runDir), link);
  } catch { /* symlinks unsupported here: not needed for training */ }
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

async function main() {
  const { values, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(helpText(USAGE, SPECS, GPU_DEFAULTS as unknown as Record<string, unknown>));
    return;
  }
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const fileOpts = values.config ? await readConfigFile(String(values.config)) : {};
  const flags = { ...values } as Partial<TrainOptions> & { config?: string };
  delete flags.config;
  let resumeFrom: { path: string; ckpt: TrainingCheckpoint } | undefined;
  const out0 = String(flags.out ?? fileOpts.out ?? GPU_DEFAULTS.out);
  if (flags.resume ?? fileOpts.resume) {
    const path = await findResume(String(flags.resume ?? fileOpts.resume), out0);
    const ckpt = decodeCheckpoint(await readSource(path));
    if (!ckpt.state || !ckpt.ema || !ckpt.m || !ckpt.v) {
      throw new UsageError(`--resume ${path}: not a training checkpoint (no optimizer/EMA state)`);
    }
    resumeFrom = { path, ckpt };
  }
  const defaults = gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS;
  const saved = (resumeFrom?.ckpt.state?.options ?? {}) as Partial<TrainOptions>;
  const opts: TrainOptions = { ...defaults, ...saved, ...fileOpts, ...flags } as TrainOptions;
  delete opts.resume;
  opts.hflip ??= datasetTrainDefaults(opts.dataset).hflip;

  console.log(`adapter: ${describeGpu(gpu)}`);
  if (gpu.isFallback && !resumeFrom) {
    console.log(
      "software adapter: using the CPU profile (preset tiny, small batch, few steps); " +
        "a GPU trains the seed's configuration",
    );
  }
  const dataset = await loadDataset(opts.dataset as never, opts.data, {
    patchSize: opts.patch_size ?? PRESETS[opts.preset as PresetName]?.patch_size ?? 2,
    imageSize: opts.image_size,
  });
  const partial: PartialConfig = {
    preset: opts.preset as PresetName,
    image_size: dataset.imageSize,
    in_channels: dataset.channels,
    num_classes: opts.num_classes ?? dataset.numClasses,
    t_scale: opts.t_scale,
  };
  for (const key of ["hidden_size", "depth", "num_heads", "patch_size"] as const) {
    if (opts[key] !== undefined) partial[key] = opts[key];
  }
  let cfg;
  try {
    cfg = resumeFrom?.ckpt.cfg ?? resolveConfig(partial);
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (cfg.image_size !== dataset.imageSize || cfg.in_channels !== dataset.channels) {
    throw new UsageError(
      `the model is ${cfg.in_channels}×${cfg.image_size}² but the dataset is ${dataset.channels}×${dataset.imageSize}²`,
    );
  }
  if (cfg.num_classes > 0 && dataset.numClasses > cfg.num_classes) {
    throw new UsageError(
      `the dataset has ${dataset.numClasses} classes, the model ${cfg.num_classes}`,
    );
  }

  const runDir = resumeFrom
    ? dirname(dirname(resumeFrom.path))
    : join(opts.out, opts.name ?? new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19));
  await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
  await Deno.mkdir(join(runDir, "samples"), { recursive: true });
  await Deno.writeTextFile(
    join(runDir, "config.json"),
    JSON.stringify({ model: cfg, train: opts }, null, 2) + "\n",
  );

  const trainer = new Trainer(
    await createModel(cfg, { seed: opts.seed, kernels: k }),
    opts,
    dataset,
  );
  if (resumeFrom) {
    const c = resumeFrom.ckpt;
    trainer.restore({ params: c.params, ema: c.ema!, m: c.m!, v: c.v! }, c.state as TrainerState);
    console.log(`resumed from ${resumeFrom.path} at step ${trainer.step}`);
  }
  const nParams = trainer.model.layout.slots.filter((s) => s.name !== "pos_embed").reduce(
    (a, s) => a + s.length,
    0,
  );
  console.log(
    `model: DiT ${opts.preset} D=${cfg.hidden_size} depth=${cfg.depth} heads=${cfg.num_heads} ` +
      `patch=${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², ${cfg.num_classes} classes, ` +
      `${
        (nParams / 1e6).toFixed(2)
      }M parameters; data: ${dataset.length} images; batch ${opts.batch_size}; ` +
      `${trainer.dispatchCount} dispatches a step`,
  );
  console.log(`run directory: ${runDir}`);
  await linkLatest(runDir);

  const metricsPath = join(runDir, "metrics.jsonl");
  const lossPoints: [number, number][] = [];
  const keptRows: string[] = [];
  try {
    for (const line of (await Deno.readTextFile(metricsPath)).split("\n")) {
      if (!line.trim()) continue;
      let r;
      try {
        r = JSON.parse(line);
      } catch {
        continue; // a row cut short by a kill
      }
      if (r.step <= trainer.step) {
        lossPoints.push([r.step, r.loss]);
        keptRows.push(line);
      }
    }
  } catch { /* new run */ }
  // Keep metrics rows (all their fields) up to the resumed step: a killed run may have logged
  // past its checkpoint.
  await Deno.writeTextFile(
    metricsPath,
    keptRows.join("\n") + (keptRows.length ? "\n" : ""),
  );

  let lastGood: string | undefined = resumeFrom?.path;
  const saveCheckpoint = async (name: string) => {
    const bufs = await trainer.buffers();
    for (const [which, arr] of Object.entries(bufs)) {
      for (let i = 0; i < arr.length; i++) {
        if (!Number.isFinite(arr[i])) {
          throw new Error(
            `${which} has a non-finite value at step ${trainer.step}: not writing a checkpoint` +
              (lastGood ? `; the last good one is ${lastGood}` : ""),
          );
        }
      }
    }
    const path = join(runDir, "checkpoints", name);
    await writeFileAtomic(
      path,
      encodeCheckpoint({ cfg, ...bufs, state: { ...trainer.state(), options: { ...opts } } }),
    );
    lastGood = path;
    return path;
  };
  const sampleGrid = async (name: string) => {
    const K = cfg.num_classes;
    const rows = K > 0 ? Math.min(K, 10) : 8, cols = 8;
    const labels = Array.from({ length: rows * cols }, (_, i) => K > 0 ? Math.floor(i / cols) : 0);
    const { images } = await generateImages(trainer.ema, {
      labels,
      steps: opts.num_sampling_steps,
      cfgScale: opts.cfg_scale,
      seed: opts.seed,
      batch: 80,
    });
    const png = await imageGridPng(
      images,
      { channels: cfg.in_channels, size: cfg.image_size },
      rows,
      cols,
      cfg.image_size < 64 ? 2 : 1,
    );
    await writeFileAtomic(join(runDir, "samples", name), png);
  };

  let stop = false;
  const onSigint = () => {
    if (stop) Deno.exit(130);
    stop = true;
    console.log("\ninterrupted: writing a checkpoint (Ctrl-C again to quit at once)");
  };
  Deno.addSignalListener("SIGINT", onSigint);

  const enc = new TextEncoder();
  const isTty = Deno.stdout.isTerminal();
  let smooth = NaN;
  const t0 = performance.now();
  const startStep = trainer.step;
  let lastLogged = startStep;
  const report = async (rows: Awaited<ReturnType<Trainer["flushMetrics"]>>) => {
    if (!rows.length) return;
    let text = "";
    for (const r of rows) {
      if (!Number.isFinite(r.loss)) {
        throw new Error(
          `loss is ${r.loss} at step ${r.step}: stopping` +
            (lastGood
              ? `; the last good checkpoint is ${lastGood}`
              : " (no checkpoint was written yet)"),
        );
      }
      smooth = Number.isNaN(smooth) ? r.loss : 0.95 * smooth + 0.05 * r.loss;
      lossPoints.push([r.step, r.loss]);
      const elapsed = (performance.now() - t0) / 1000;
      const ips = (r.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
      text += JSON.stringify({
        step: r.step,
        loss: r.loss,
        loss_smooth: smooth,
        lr: r.lr,
        grad_norm: r.gradNorm,
        images_per_s: ips,
        elapsed_s: elapsed,
      }) + "\n";
    }
    await Deno.writeTextFile(metricsPath, text, { append: true });
    const last = rows[rows.length - 1];
    if (last.step - lastLogged >= opts.log_every || last.step === opts.train_steps) {
      lastLogged = last.step;
      const elapsed = (performance.now() - t0) / 1000;
      const ips = (last.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
      const eta = (opts.train_steps - last.step) * opts.batch_size / Math.max(ips, 1e-9);
      const line = `step ${last.step}/${opts.train_steps}  loss ${smooth.toFixed(4)}  ` +
        `grad ${last.gradNorm.toFixed(3)}  lr ${last.lr.toExponential(2)}  ${
          ips.toFixed(1)
        } img/s  ETA ${fmtTime(eta)}`;
      if (isTty) await Deno.stdout.write(enc.encode(`\r${line}\x1b[K`));
      else console.log(line);
    }
  };

  while (trainer.step < opts.train_steps && !stop) {
    await trainer.trainStep();
    await report(trainer.takeMetrics());
    const s = trainer.step;
    const ckptDue = opts.ckpt_every > 0 && s % opts.ckpt_every === 0 && s < opts.train_steps;
    const sampleDue = opts.sample_every > 0 && s % opts.sample_every === 0;
    if (ckptDue || sampleDue) {
      await report(await trainer.flushMetrics());
      if (isTty) console.log();
      if (ckptDue) {
        console.log(
          `checkpoint: ${await saveCheckpoint(`step_${String(s).padStart(6, "0")}.safetensors`)}`,
        );
      }
      if (sampleDue) {
        await sampleGrid(`step_${String(s).padStart(6, "0")}.png`);
        await writeFileAtomic(join(runDir, "loss.png"), await lossCurvePng(lossPoints));
      }
    }
  }
  await report(await trainer.flushMetrics());
  if (isTty) console.log();
  Deno.removeSignalListener("SIGINT", onSigint);
  if (stop) {
    const path = await saveCheckpoint(`step_${String(trainer.step).padStart(6, "0")}.safetensors`);
    console.log(`checkpoint: ${path}\nresume with: deno task train --resume ${path}`);
    Deno.exit(130);
  }
  const final = await saveCheckpoint("final.safetensors");
  if (trainer.step % Math.max(1, opts.sample_every) !== 0 || opts.sample_every === 0) {
    await sampleGrid(`step_${String(trainer.step).padStart(6, "0")}.png`);
  }
  await writeFileAtomic(join(runDir, "loss.png"), await lossCurvePng(lossPoints));
  console.log(`done: ${trainer.step} steps; final checkpoint ${final}`);
  console.log(`samples: ${join(runDir, "samples")}/  loss curve: ${join(runDir, "loss.png")}`);
  console.log(
    `generate: deno task generate --checkpoint ${runDir} ${
      cfg.num_classes > 0 ? "--class_grid" : "--num_samples 16"
    }`,
  );
}

if (import.meta.main) await runMain(main);
