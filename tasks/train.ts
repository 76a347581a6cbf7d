/**
 * `deno task train`: flow-matching training of DiT2D with EMA, checkpoints, exact resume, sample
 * grids, metrics and a loss curve. Run with --help for the flags. Three parts: the configuration
 * (flags, --config, --resume: all checked before the GPU is touched), the run directory, the loop.
 */
import { join } from "node:path";
import {
  CPU_DEFAULTS,
  createModel,
  type Dataset,
  datasetTrainDefaults,
  defaultPrecision,
  describeGpu,
  type DiTConfig,
  getGpu,
  GPU_DEFAULTS,
  Kernels,
  loadDataset,
  memoryLimitProblem,
  precisionProblem,
  type PresetName,
  PRESETS,
  resolveConfig,
  TRAIN_OPTIONS,
  Trainer,
  type TrainerState,
  type TrainingCheckpoint,
  type TrainOptions,
  trainOptionsProblem,
  VqvaeLatentDecoder,
} from "../mod.ts";
import { runMain, UsageError } from "./cli.ts";
import { loadTrainingCheckpoint, type ResumePoint } from "./resume.ts";
import { alreadyDone, openRun, resolvePlan, savedOptions, type TaskSpec } from "./run_plan.ts";
import { StopSignals, trainLoop } from "./train_loop.ts";
import { latentDataset, latentShape, latentSource } from "./latent_data.ts";
import { allocateTrainer } from "./train_memory.ts";

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
  "vqvae",
] as const;

const USAGE = "Usage: deno task train [options]\n\n" +
  "Trains a class-conditional DiT2D by flow matching. With no flags: Fashion-MNIST (Debian's\n" +
  "dataset-fashion-mnist when installed, else the embedded 6,000-image subset); the seed's\n" +
  "configuration on a GPU, a CPU profile on a software adapter (both defaults are listed).\n" +
  "A run writes --out/--name/ (never over an existing run: --resume continues one, --overwrite\n" +
  "replaces it); Ctrl-C or SIGTERM writes a checkpoint first.";

const SPEC: TaskSpec<TrainingCheckpoint> = {
  task: "train",
  usage: USAGE,
  table: TRAIN_OPTIONS,
  modelKeys: MODEL_KEYS,
  load: (path) => loadTrainingCheckpoint(path),
  saved: (c) => ({ options: c.state?.options, step: c.state?.step ?? 0 }),
};

/** The options stored in a training checkpoint (unknown names of older versions dropped). */
const savedTrainOptions = (r: ResumePoint) => savedOptions(SPEC, r) as Partial<TrainOptions>;

/** The model config for the dataset, checked against it. */
function modelConfig(
  opts: TrainOptions,
  data: Pick<Dataset, "imageSize" | "channels" | "numClasses">,
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

/**
 * The run directory's folders and config.json (model, training options by the table, and `extra`:
 * class names, a latent run's space).
 */
async function writeRunConfig(
  runDir: string,
  cfg: DiTConfig,
  opts: TrainOptions,
  from?: string,
  extra: Record<string, unknown> = {},
) {
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
    JSON.stringify({ model: cfg, train, resumed_from: from, ...extra }, null, 2) + "\n",
  );
}

function describeModel(t: Trainer, opts: TrainOptions, images: number): string {
  const cfg = t.cfg;
  const n = t.model.layout.slots.filter((s) => s.name !== "pos_embed")
    .reduce((a, s) => a + s.length, 0);
  return `model: DiT ${opts.preset} D=${cfg.hidden_size} depth=${cfg.depth} ` +
    `heads=${cfg.num_heads} patch=${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², ` +
    `${cfg.num_classes} classes, ${(n / 1e6).toFixed(2)}M parameters; data: ${images} images; ` +
    `batch ${opts.batch_size}` + (t.M < t.B ? ` in ${t.B / t.M} micro-batches of ${t.M}` : "") +
    (opts.grad_checkpointing ? ", activation checkpointing" : "") +
    (opts.optimizer === "muon"
      ? `; Muon (lr ${opts.muon_lr}, momentum ${opts.muon_momentum}) + AdamW (lr ${opts.lr})`
      : `; AdamW (lr ${opts.lr})`) +
    `; ${t.precision}` +
    (t.precision === "f16" ? ` (mixed, loss scale ${opts.loss_scale})` : "") +
    `; ${t.dispatchCount} dispatches a step`;
}

/** Options a resumed run cannot change: its optimizer (the checkpoint holds that one's state). */
function checkResumable(r: ResumePoint, given: Partial<TrainOptions>): void {
  const saved = savedTrainOptions(r).optimizer ?? "adamw";
  if (given.optimizer !== undefined && given.optimizer !== saved) {
    throw new UsageError(
      `--optimizer ${given.optimizer}: ${r.path} holds ${saved}'s state (a resumed run keeps ` +
        "its optimizer; start a new run to change it)",
    );
  }
}

async function main(): Promise<number> {
  // 1. The configuration: flags, --config, --resume, checked before the GPU is touched.
  const plan = await resolvePlan(Deno.args, SPEC);
  if (!plan || alreadyDone(SPEC, plan)) return 0;
  const r = plan.resume;
  const latent = await latentSource(plan.given, r); // --vqvae: the VQ-VAE, checked
  const signals = new StopSignals();
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const defaults = gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS;
  if (r) checkResumable(r, plan.given);
  const opts: TrainOptions = { ...defaults, ...(r ? savedTrainOptions(r) : {}), ...plan.given };
  const problem = trainOptionsProblem(opts);
  if (problem) throw new UsageError(problem);
  opts.hflip ??= latent ? false : datasetTrainDefaults(opts.dataset).hflip;
  if (latent && !r) opts.patch_size ??= 1; // 7×7 and 8×8 latent grids
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
    patchSize: latent ? undefined : r?.ckpt.cfg.patch_size ?? opts.patch_size ??
      PRESETS[opts.preset as PresetName]?.patch_size ?? 2,
    imageSize: opts.image_size ?? latent?.vqvae.cfg.image_size,
  }).catch((e) => {
    throw new UsageError(`--dataset ${opts.dataset}: ${(e as Error).message}`);
  });
  const shape = latent ? latentShape(latent, data, `--dataset ${opts.dataset}`) : data;
  const cfg = modelConfig(opts, shape, r);
  // What the run allocates, by a dry run: past the device's limits it stops here, one line.
  const run = { cfg, opts, precision: opts.precision };
  const tooBig = memoryLimitProblem(gpu, run);
  if (tooBig) throw new UsageError(tooBig);
  if (signals.signal) return signals.exitCode; // stopped before anything was written

  // 2. The run directory, locked for this run.
  const runDir = await openRun(plan);
  try {
    if (runDir.cleaned) {
      console.log(`removed ${runDir.cleaned} temporary file(s) of an interrupted write`);
    }
    // A latent run trains on the dataset encoded by its VQ-VAE, whose decoder draws the grids.
    const lat = latent && await latentDataset(k, latent, data, runDir.dir, opts.dataset);
    const extra = { latent: lat?.space, classNames: data.classNames };
    const decoder = lat ? new VqvaeLatentDecoder(k, lat.space) : undefined;
    const trainer = await allocateTrainer(gpu, run, runDir, async () =>
      new Trainer(
        await createModel(cfg, {
          seed: opts.seed,
          kernels: k,
          precision: opts.precision,
          decoder,
        }),
        opts,
        lat?.data ?? data,
      ));
    await writeRunConfig(runDir.dir, cfg, opts, r?.path, {
      class_names: data.classNames,
      latent: lat && { scale: lat.space.scale, vqvae: lat.space.vqvae.cfg, from: latent.from },
    });
    if (r) {
      const c = r.ckpt;
      trainer.restore({ params: c.params, ema: c.ema!, m: c.m!, v: c.v! }, c.state as TrainerState);
      console.log(`resumed from ${r.path} at step ${trainer.step}`);
    }
    console.log(describeModel(trainer, opts, data.length));
    console.log(`run directory: ${runDir.dir}`);
    // 3. The loop.
    return await trainLoop({
      trainer,
      cfg,
      opts,
      runDir: runDir.dir,
      resumedFrom: r?.path,
      signals,
      extra,
      timeLimit: plan.timeLimit,
    });
  } finally {
    signals.dispose();
    runDir.release();
  }
}

if (import.meta.main) await runMain(main);
