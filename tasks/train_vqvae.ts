/**
 * `deno task train-vqvae`: trains the VQ-VAE (src/vqvae) whose encoder latent flow matching uses:
 * checkpoints with exact resume, metrics rows (reconstruction loss, PSNR, codebook usage,
 * perplexity), held-out PSNR, reconstruction grids (originals above reconstructions), and at the
 * end the weights alone (`vqvae.safetensors`, what `train --vqvae` needs).
 * `--bench` times the training step instead. Run with --help for the flags. The run directory,
 * its lock, --resume, Ctrl-C/SIGTERM and progress lines are the `train` task's (run_plan.ts,
 * run_dir.ts, resume.ts, train_loop.ts, progress.ts). Here: the options, the checkpoint kind and
 * the run's set-up; the data and config in train_vqvae_setup.ts, the loop in train_vqvae_loop.ts,
 * --bench in train_vqvae_bench.ts.
 */
import {
  decodeVqvaeCheckpoint,
  describeGpu,
  getGpu,
  Kernels,
  NotVqvaeCheckpoint,
  type OptionTable,
  VQVAE,
  VQVAE_CPU_DEFAULTS,
  VQVAE_GPU_DEFAULTS,
  VQVAE_OPTIONS,
  type VqvaeCheckpoint,
  vqvaeParameterCount,
  VqvaeTrainer,
  type VqvaeTrainerState,
  type VqvaeTrainOptions,
} from "../mod.ts";
import { runMain, UsageError } from "./cli.ts";
import { OtherKind, readBytes } from "./resume.ts";
import { StopSignals } from "./train_loop.ts";
import {
  alreadyDone,
  openRun,
  type Plan,
  resolvePlan,
  savedOptions,
  type TaskSpec,
} from "./run_plan.ts";
import { loadSplits, MODEL_KEYS, vqvaeConfig, writeRunConfig } from "./train_vqvae_setup.ts";
import { bench } from "./train_vqvae_bench.ts";
import { loop } from "./train_vqvae_loop.ts";

const EXTRA = {
  bench: {
    type: "boolean",
    help: "time training steps on random images (no dataset, no files) and print JSON",
  },
} satisfies OptionTable;

const USAGE = "Usage: deno task train-vqvae [options]\n\n" +
  "Trains a VQ-VAE (encoder with two stride-2 downsamplings, EMA vector quantizer, mirrored\n" +
  "decoder) on images; its encoder gives the latent space of latent flow matching\n" +
  "(deno task train --vqvae CHECKPOINT). The GPU defaults are listed, with the CPU profile's\n" +
  "where a software adapter uses other values. A run writes --out/--name/ like `train`.";

/** A VQ-VAE training checkpoint, or an Error saying why not (OtherKind for a flow model's). */
async function loadVqvaeTraining(path: string): Promise<VqvaeCheckpoint> {
  const bytes = await readBytes(path);
  let c;
  try {
    c = decodeVqvaeCheckpoint(bytes);
  } catch (e) {
    if (e instanceof NotVqvaeCheckpoint) throw new OtherKind(e.message);
    throw e;
  }
  if (!c.m || !c.v || !c.train) throw new Error("not a training checkpoint (no optimizer state)");
  return c;
}

const SPEC: TaskSpec<VqvaeCheckpoint> = {
  task: "train-vqvae",
  usage: USAGE,
  table: VQVAE_OPTIONS,
  extra: EXTRA,
  modelKeys: MODEL_KEYS,
  load: loadVqvaeTraining,
  saved: (c) => ({ options: c.train?.options, step: c.train?.step ?? 0 }),
};

async function train(plan: Plan<VqvaeCheckpoint>, k: Kernels, opts: VqvaeTrainOptions) {
  const r = plan.resume;
  const signals = new StopSignals();
  const data = await loadSplits(opts).catch((e) => {
    throw new UsageError(`--dataset ${opts.dataset}: ${(e as Error).message}`);
  });
  const { train: images, heldOut, note } = data;
  const cfg = r?.ckpt.cfg ?? vqvaeConfig(opts, images.imageSize, images.channels);
  if (cfg.image_size !== images.imageSize || cfg.in_channels !== images.channels) {
    throw new UsageError(
      `the checkpoint's VQ-VAE is for ${cfg.in_channels}×${cfg.image_size}² images but the ` +
        `dataset's are ${images.channels}×${images.imageSize}²`,
    );
  }
  if ((opts.shift ?? 0) >= images.imageSize) {
    throw new UsageError(
      `--shift ${opts.shift}: translations must be smaller than the ${images.imageSize}-pixel ` +
        `images; use at most ${images.imageSize - 1} (a few pixels is usual)`,
    );
  }
  if (signals.signal) return signals.exitCode; // stopped before anything was written
  const run = await openRun(plan);
  try {
    if (run.cleaned) {
      console.log(`removed ${run.cleaned} temporary file(s) of an interrupted write`);
    }
    await writeRunConfig(run.dir, cfg, opts, data, r?.path);
    const trainer = new VqvaeTrainer(k, cfg, opts, images);
    if (r) {
      const c = r.ckpt;
      trainer.restore(
        { params: c.params, m: c.m!, v: c.v!, state: c.state },
        c.train as VqvaeTrainerState,
      );
      console.log(`resumed from ${r.path} at step ${trainer.step}`);
    }
    const model = new VQVAE(k, cfg, trainer.params, trainer.state);
    console.log(
      `model: VQ-VAE channels=${cfg.channels} res_blocks=${cfg.res_blocks} ` +
        `K=${cfg.codebook_size} D=${cfg.code_dim} (${cfg.in_channels}×${cfg.image_size}² → ` +
        `${cfg.code_dim}×${cfg.image_size / 4}²), ` +
        `${vqvaeParameterCount(cfg).toLocaleString("en-US")} parameters; data: ` +
        `${images.length} images, ${heldOut.length} held out (${note}); ` +
        `batch ${opts.batch_size}; ${trainer.dispatchCount} dispatches a step`,
    );
    console.log(`run directory: ${run.dir}`);
    return await loop({
      trainer,
      model,
      opts,
      heldOut,
      note,
      runDir: run.dir,
      resumedFrom: r?.path,
      signals,
      timeLimit: plan.timeLimit,
    });
  } finally {
    signals.dispose();
    run.release();
  }
}

async function main(): Promise<number> {
  const plan = await resolvePlan(Deno.args, SPEC);
  if (!plan) return 0;
  const benchMode = Boolean(plan.flags.bench);
  if (!benchMode && alreadyDone(SPEC, plan)) return 0;
  const r = plan.resume;
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const defaults = gpu.isFallback ? VQVAE_CPU_DEFAULTS : VQVAE_GPU_DEFAULTS;
  const saved = r ? savedOptions(SPEC, r) : {};
  const opts = { ...defaults, ...saved, ...plan.given } as VqvaeTrainOptions;
  console.log(`adapter: ${describeGpu(gpu)}`);
  if (benchMode) {
    await bench(k, opts, plan.given.train_steps !== undefined);
    return 0;
  }
  if (gpu.isFallback && !r) {
    console.log("software adapter: using the CPU profile (a GPU trains the full-size network)");
  }
  return await train(plan, k, opts);
}

if (import.meta.main) await runMain(main);
