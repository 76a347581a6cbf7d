/**
 * `deno task train`: flow-matching training of DiT2D with EMA, checkpoints, exact resume, sample
 * grids, metrics and a loss curve. Run with --help for the flags. Three parts: the configuration
 * (flags, --config, --resume: all checked before the GPU is touched), the run directory, the loop.
 */
import { join, resolve } from "node:path";
import {
  CPU_DEFAULTS,
  createModel,
  datasetTrainDefaults,
  defaultPrecision,
  describeGpu,
  type DiTConfig,
  getGpu,
  GPU_DEFAULTS,
  Kernels,
  loadDataset,
  type OptionTable,
  precisionProblem,
  type PresetName,
  PRESETS,
  resolveConfig,
  TRAIN_OPTIONS,
  Trainer,
  type TrainerState,
  type TrainOptions,
  validateOptions,
} from "../mod.ts";
import { helpText, parseFlags, readConfigFile, runMain, UsageError } from "./cli.ts";
import { checkWritableDir } from "./files.ts";
import { checkNewRun, openExistingRun, openNewRun, type RunDir } from "./run_dir.ts";
import { findResume, type ResumePoint } from "./resume.ts";
import { StopSignals, trainLoop } from "./train_loop.ts";

const RUN_OPTIONS = {
  config: {
    type: "string",
    help: 'JSON file of these options by name, e.g. {"lr": 3e-4}; flags override it',
  },
  out: { type: "string", help: "parent folder of run directories", default: "runs" },
  name: {
    type: "string",
    help: "run name (default: the date and time, made unique)",
    check: (n: string) =>
      /^[\w.-]+$/.test(n) && n !== "." && n !== ".." && n !== "latest"
        ? undefined
        : `must be a folder name of letters, digits, '.', '_', '-' (not '.', '..' or 'latest'), got '${n}'`,
  },
  resume: {
    type: "string",
    help: "continue a run: a checkpoint, a run directory, or 'auto' (the newest checkpoint " +
      "under --out); falls back past checkpoints that do not load",
  },
  overwrite: { type: "boolean", help: "replace the run already in --out/--name" },
} satisfies OptionTable;
const OPTIONS: OptionTable = { ...TRAIN_OPTIONS, ...RUN_OPTIONS };

/** Options fixed by a checkpoint's model: a resumed run cannot change them. */
const MODEL_KEYS = [
  "preset",
  "image_size",
  "in_channels",
  "hidden_size",
  "depth",
  "num_heads",
  "patch_size",
  "num_classes",
  "t_scale",
] as const;

const USAGE = "Usage: deno task train [options]\n\n" +
  "Trains a class-conditional DiT2D by flow matching. With no flags: Fashion-MNIST (Debian's\n" +
  "dataset-fashion-mnist when installed, else the embedded 6,000-image subset); the seed's\n" +
  "configuration on a GPU, a CPU profile on a software adapter (both defaults are listed).\n" +
  "A run writes --out/--name/ (never over an existing run: --resume continues one, --overwrite\n" +
  "replaces it); Ctrl-C or SIGTERM writes a checkpoint first.";

interface Plan {
  /** Options given (flags over --config), by name. */
  given: Partial<TrainOptions>;
  out: string;
  name?: string;
  overwrite: boolean;
  resume?: ResumePoint;
}

/** Flags, --config and --resume, all checked before any GPU work. */
async function resolvePlan(args: string[]): Promise<Plan | undefined> {
  const { values: flags, help } = parseFlags(args, OPTIONS);
  if (help) {
    console.log(helpText(USAGE, OPTIONS, "CPU profile"));
    return undefined;
  }
  const file = flags.config ? await readConfigFile(String(flags.config), OPTIONS, ["config"]) : {};
  const all = { ...file, ...flags } as Record<string, unknown>;
  const given: Record<string, unknown> = {};
  for (const k of Object.keys(TRAIN_OPTIONS)) if (all[k] !== undefined) given[k] = all[k];
  const out = String(all.out ?? RUN_OPTIONS.out.default);
  await checkWritableDir(out, `--out ${out}`).catch((e) => {
    throw new UsageError(e.message);
  });
  if (given.data !== undefined) {
    const st = await Deno.stat(String(given.data)).catch(() => undefined);
    if (!st?.isDirectory) throw new UsageError(`--data ${given.data}: no such folder`);
  }
  if (all.resume !== undefined && all.overwrite) {
    throw new UsageError("--resume continues a run and --overwrite replaces one: give only one");
  }
  const plan: Plan = {
    given: given as Partial<TrainOptions>,
    out,
    name: all.name as string | undefined,
    overwrite: Boolean(all.overwrite),
  };
  if (all.resume !== undefined) {
    plan.resume = await findResume(String(all.resume), out);
    const saved = savedOptions(plan.resume);
    for (const k of MODEL_KEYS) {
      if (given[k] !== undefined && saved[k] !== undefined && given[k] !== saved[k]) {
        throw new UsageError(
          `--${k.replaceAll("_", "-")} ${given[k]}: the checkpoint's model has ${saved[k]} ` +
            "(a resumed run keeps its model; start a new run to change it)",
        );
      }
    }
  }
  const target = plan.name !== undefined ? join(out, plan.name) : undefined;
  if (target && !(plan.resume?.runDir && resolve(target) === resolve(plan.resume.runDir))) {
    await checkNewRun(out, plan.name!, plan.overwrite);
  }
  return plan;
}

/** The options stored in a training checkpoint (unknown names of older versions dropped). */
function savedOptions(r: ResumePoint): Partial<TrainOptions> {
  const raw = (r.ckpt.state?.options ?? {}) as Record<string, unknown>;
  const known = Object.fromEntries(Object.entries(raw).filter(([k]) => k in TRAIN_OPTIONS));
  try {
    return validateOptions(TRAIN_OPTIONS, known) as Partial<TrainOptions>;
  } catch (e) {
    throw new UsageError(`--resume ${r.path}: its saved options: ${(e as Error).message}`);
  }
}

/** The model config for the dataset, checked against it. */
function modelConfig(
  opts: TrainOptions,
  data: Awaited<ReturnType<typeof loadDataset>>,
  resume?: ResumePoint,
): DiTConfig {
  let cfg: DiTConfig;
  try {
    cfg = resume?.ckpt.cfg ?? resolveConfig({
      preset: opts.preset as PresetName,
      image_size: data.imageSize,
      in_channels: data.channels,
      num_classes: opts.num_classes ?? data.numClasses,
      t_scale: opts.t_scale,
      ...Object.fromEntries(
        (["hidden_size", "depth", "num_heads", "patch_size"] as const)
          .filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]]),
      ),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (cfg.image_size !== data.imageSize || cfg.in_channels !== data.channels) {
    throw new UsageError(
      `the model is ${cfg.in_channels}×${cfg.image_size}² but the dataset is ` +
        `${data.channels}×${data.imageSize}²`,
    );
  }
  if (cfg.num_classes > 0 && data.numClasses > cfg.num_classes) {
    throw new UsageError(
      `the dataset has ${data.numClasses} classes, the model ${cfg.num_classes}`,
    );
  }
  return cfg;
}

/** The run directory: the resumed run's own, or a new one (never over an existing run). */
function openRun(plan: Plan): Promise<RunDir> {
  const own = plan.resume?.runDir;
  const target = plan.name !== undefined ? join(plan.out, plan.name) : own;
  if (own && target && resolve(target) === resolve(own)) return openExistingRun(own);
  return openNewRun(plan.out, plan.name, plan.overwrite);
}

/** A resumed run already at its total: say how to go further (nothing else to do). */
function alreadyDone(plan: Plan): boolean {
  const r = plan.resume;
  if (!r) return false;
  const step = r.ckpt.state!.step;
  const total = plan.given.train_steps ?? savedOptions(r).train_steps ?? Infinity;
  if (step < total) return false;
  console.log(
    `${r.path} is at step ${step}, the run's total is ${total}: nothing to train. To train ` +
      `further, raise the total: deno task train --resume ${r.path} --steps ${2 * step}`,
  );
  return true;
}

/** The run directory's folders and config.json (model, training options by the table). */
async function writeRunConfig(runDir: string, cfg: DiTConfig, opts: TrainOptions, from?: string) {
  await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
  if (opts.sample_every > 0) await Deno.mkdir(join(runDir, "samples"), { recursive: true });
  const train = Object.fromEntries(
    Object.keys(TRAIN_OPTIONS).flatMap((key) => {
      const v = opts[key as keyof TrainOptions];
      return v === undefined ? [] : [[key, v]];
    }),
  );
  await Deno.writeTextFile(
    join(runDir, "config.json"),
    JSON.stringify({ model: cfg, train, resumed_from: from }, null, 2) + "\n",
  );
}

function describeModel(t: Trainer, opts: TrainOptions, images: number): string {
  const cfg = t.cfg;
  const n = t.model.layout.slots.filter((s) => s.name !== "pos_embed")
    .reduce((a, s) => a + s.length, 0);
  return `model: DiT ${opts.preset} D=${cfg.hidden_size} depth=${cfg.depth} ` +
    `heads=${cfg.num_heads} patch=${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², ` +
    `${cfg.num_classes} classes, ${(n / 1e6).toFixed(2)}M parameters; data: ${images} images; ` +
    `batch ${opts.batch_size}; ${t.precision}` +
    (t.precision === "f16" ? ` (mixed, loss scale ${opts.loss_scale})` : "") +
    `; ${t.dispatchCount} dispatches a step`;
}

async function main(): Promise<number> {
  // 1. The configuration: flags, --config, --resume, checked before the GPU is touched.
  const plan = await resolvePlan(Deno.args);
  if (!plan || alreadyDone(plan)) return 0;
  const r = plan.resume;
  const signals = new StopSignals();
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const defaults = gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS;
  const opts: TrainOptions = { ...defaults, ...(r ? savedOptions(r) : {}), ...plan.given };
  opts.hflip ??= datasetTrainDefaults(opts.dataset).hflip;
  opts.precision ??= defaultPrecision(gpu);
  const why = precisionProblem(gpu, opts.precision);
  if (why) throw new UsageError(`--${why}`);
  console.log(`adapter: ${describeGpu(gpu)}`);
  if (gpu.isFallback && !r) {
    console.log(
      "software adapter: using the CPU profile (preset tiny, small batch, few steps); " +
        "a GPU trains the seed's configuration",
    );
  }
  const data = await loadDataset(opts.dataset as never, opts.data, {
    patchSize: r?.ckpt.cfg.patch_size ?? opts.patch_size ??
      PRESETS[opts.preset as PresetName]?.patch_size ?? 2,
    imageSize: opts.image_size,
  }).catch((e) => {
    throw new UsageError(`--dataset ${opts.dataset}: ${(e as Error).message}`);
  });
  const cfg = modelConfig(opts, data, r);
  if (signals.signal) return signals.exitCode; // stopped before anything was written

  // 2. The run directory, locked for this run.
  const run = await openRun(plan);
  try {
    if (run.cleaned) {
      console.log(`removed ${run.cleaned} temporary file(s) of an interrupted write`);
    }
    await writeRunConfig(run.dir, cfg, opts, r?.path);
    const trainer = new Trainer(
      await createModel(cfg, { seed: opts.seed, kernels: k, precision: opts.precision }),
      opts,
      data,
    );
    if (r) {
      const c = r.ckpt;
      trainer.restore({ params: c.params, ema: c.ema!, m: c.m!, v: c.v! }, c.state as TrainerState);
      console.log(`resumed from ${r.path} at step ${trainer.step}`);
    }
    console.log(describeModel(trainer, opts, data.length));
    console.log(`run directory: ${run.dir}`);
    // 3. The loop.
    return await trainLoop({ trainer, cfg, opts, runDir: run.dir, resumedFrom: r?.path, signals });
  } finally {
    signals.dispose();
    run.release();
  }
}

if (import.meta.main) await runMain(main);
