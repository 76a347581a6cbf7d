/**
 * `deno task train-vqvae`: trains the VQ-VAE (src/vqvae) whose encoder latent flow matching uses:
 * checkpoints with exact resume, metrics rows (reconstruction loss, PSNR, codebook usage,
 * perplexity), held-out PSNR, reconstruction grids (originals above reconstructions), and at the
 * end the weights alone (`vqvae.safetensors`, what `train --vqvae` needs).
 * `--bench` times the training step instead. Run with --help for the flags. The run directory,
 * its lock, --resume, Ctrl-C/SIGTERM and progress lines are the `train` task's (run_plan.ts,
 * run_dir.ts, resume.ts, train_loop.ts, progress.ts).
 */
import { join } from "node:path";
import {
  ArrayDataset,
  cifar10FromBytes,
  type Dataset,
  decodeVqvaeCheckpoint,
  describeGpu,
  encodeVqvaeCheckpoint,
  evaluateVqvae,
  fashionMnistFromBytes,
  getGpu,
  holdOut,
  imageGridPng,
  Kernels,
  loadDataset,
  loadEmoji,
  NotVqvaeCheckpoint,
  type OptionTable,
  resolveVqvaeConfig,
  VQVAE,
  VQVAE_CPU_DEFAULTS,
  VQVAE_GPU_DEFAULTS,
  VQVAE_KEYS,
  VQVAE_OPTIONS,
  type VqvaeCheckpoint,
  type VQVAEConfig,
  vqvaeParameterCount,
  type VqvaeStepMetrics,
  VqvaeTrainer,
  type VqvaeTrainerState,
  type VqvaeTrainOptions,
} from "../mod.ts";
import { DEBIAN_FASHION_MNIST } from "../src/io/datasets.ts";
import { runMain, UsageError } from "./cli.ts";
import { writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";
import { CheckpointWriter } from "./checkpoint_writer.ts";
import { OtherKind, readBytes } from "./resume.ts";
import {
  alreadyDone,
  openRun,
  type Plan,
  resolvePlan,
  savedOptions,
  type TaskSpec,
} from "./run_plan.ts";
import { fmtTime, keepMetrics, stepName, StopSignals } from "./train_loop.ts";
import { kernelBreakdown, Timer, timeSteps } from "./bench_timing.ts";

/** Options that define the network (fixed by a checkpoint on resume): the config's keys. */
const MODEL_KEYS = VQVAE_KEYS;

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

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

/** Training images and held-out images, and where the held-out ones come from. */
async function loadSplits(
  o: VqvaeTrainOptions,
): Promise<{ train: Dataset; heldOut: Dataset; note: string }> {
  const tenth = (ds: Dataset, what: string) => {
    if (!(ds instanceof ArrayDataset)) throw new Error(`${what}: cannot hold out images`);
    const s = holdOut(ds);
    return { train: s.train, heldOut: s.heldOut, note: `a fixed 10% of ${what} held out` };
  };
  switch (o.dataset) {
    case "emoji": {
      const log = (l: string) => console.log(l);
      const r = await loadEmoji({ dir: o.data, imageSize: o.image_size ?? 32, log });
      return { train: r.train, heldOut: r.heldOut, note: "10% of each category held out" };
    }
    case "fashion-mnist": {
      const train = await loadDataset("fashion-mnist", o.data);
      const dir = o.data ?? DEBIAN_FASHION_MNIST;
      const [im, lb] = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        .map((f) => join(dir, f));
      if (train.length >= 60000 && await exists(im) && await exists(lb)) {
        const [ib, lbb] = [await Deno.readFile(im), await Deno.readFile(lb)];
        const test = await fashionMnistFromBytes(ib, lbb, [im, lb]);
        return { train, heldOut: test, note: `the Fashion-MNIST test set (${im})` };
      }
      return tenth(train, "the Fashion-MNIST images");
    }
    case "cifar10": {
      if (!o.data) throw new Error("give the folder of the .bin batches with --data");
      const train = await loadDataset("cifar10", o.data);
      for (const p of ["test_batch.bin", "cifar-10-batches-bin/test_batch.bin"]) {
        const path = join(o.data, p);
        if (await exists(path)) {
          return {
            train,
            heldOut: cifar10FromBytes([await Deno.readFile(path)], [path]),
            note: path,
          };
        }
      }
      return tenth(train, "CIFAR-10");
    }
    case "default":
      return tenth(await loadDataset("default"), "the embedded Fashion-MNIST subset");
    default: // folder
      return tenth(await loadDataset("folder", o.data, { imageSize: o.image_size }), o.data ?? "");
  }
}

/** The network's config from the options and the image shape. */
function vqvaeConfig(o: VqvaeTrainOptions, imageSize: number, channels: number): VQVAEConfig {
  try {
    return resolveVqvaeConfig({
      ...Object.fromEntries(MODEL_KEYS.map((key) => [key, o[key]])),
      image_size: imageSize,
      in_channels: channels,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** --bench: median time of a training step on random images, and its per-kernel GPU time. */
async function bench(k: Kernels, o: VqvaeTrainOptions, explicitSteps: boolean): Promise<void> {
  const cfg = vqvaeConfig(o, o.image_size ?? 32, o.in_channels ?? 3);
  const n = Math.max(o.batch_size, 256), per = cfg.in_channels * cfg.image_size ** 2;
  const pixels = Uint8Array.from({ length: n * per }, (_, i) => (i * 2654435761) >>> 24);
  const data = new ArrayDataset(pixels, new Int32Array(n), cfg.in_channels, cfg.image_size, 0);
  const trainer = new VqvaeTrainer(k, cfg, { ...o, log_every: 1000 }, data);
  const iters = explicitSteps ? o.train_steps : 10, repeats = 5;
  const med = await timeSteps(k, () => trainer.trainStep(), iters, repeats);
  const timer = new Timer(k);
  const { rows, total } = await kernelBreakdown(timer, trainer.stepDispatches);
  const result = {
    adapter: k.gpu.name,
    image_size: cfg.image_size,
    in_channels: cfg.in_channels,
    channels: cfg.channels,
    res_blocks: cfg.res_blocks,
    codebook_size: cfg.codebook_size,
    code_dim: cfg.code_dim,
    batch_size: o.batch_size,
    parameters: vqvaeParameterCount(cfg),
    step_ms: med,
    images_per_s: o.batch_size / (med / 1e3),
    dispatches: trainer.dispatchCount,
    allocated_bytes: k.allocatedBytes,
    breakdown: rows,
  };
  console.log(
    `VQ-VAE training step: ${med.toFixed(2)} ms (median of ${repeats}×${iters}), ` +
      `${result.images_per_s.toFixed(0)} images/s, ${trainer.dispatchCount} dispatches`,
  );
  console.log(
    `per-kernel (${timer.timestamps ? "timestamp queries" : "wall clock"}, each dispatch in ` +
      `its own pass; sum ${total.toFixed(2)} ms):`,
  );
  for (const e of rows.slice(0, 16)) {
    console.log(
      `  ${e.kernel.padEnd(22)} ${String(e.calls).padStart(4)} ${e.ms.toFixed(3).padStart(9)} ms ` +
        `${(100 * e.ms / total).toFixed(1).padStart(5)}%`,
    );
  }
  console.log(`JSON: ${JSON.stringify(result)}`);
}

/** Reconstruction grid: fixed held-out images, each row of originals above its reconstructions. */
function gridWriter(model: VQVAE, heldOut: Dataset, batch: number, dir: string) {
  const cfg = model.cfg;
  const nGrid = Math.min(32, heldOut.length), cols = Math.min(8, nGrid);
  const per = cfg.in_channels * cfg.image_size ** 2;
  const x = new Float32Array(nGrid * per);
  for (let i = 0; i < nGrid; i++) x.set(heldOut.get(i).image, i * per);
  return async (step: number) => {
    const r = await model.reconstruct(x, batch);
    const pairs = Math.ceil(nGrid / cols);
    const cells = new Float32Array(2 * pairs * cols * per).fill(1);
    for (let i = 0; i < nGrid; i++) {
      const p = Math.floor(i / cols), c = i % cols;
      cells.set(x.subarray(i * per, (i + 1) * per), (2 * p * cols + c) * per);
      cells.set(r.subarray(i * per, (i + 1) * per), ((2 * p + 1) * cols + c) * per);
    }
    const shape = { channels: cfg.in_channels, size: cfg.image_size };
    const png = await imageGridPng(cells, shape, 2 * pairs, cols, cfg.image_size < 64 ? 2 : 1);
    const path = join(dir, "samples", `recon_${stepName(step, "png").slice(5)}`);
    await writeFileAtomic(path, png);
    return path;
  };
}

interface LoopContext {
  trainer: VqvaeTrainer;
  model: VQVAE;
  opts: VqvaeTrainOptions;
  heldOut: Dataset;
  note: string;
  runDir: string;
  resumedFrom?: string;
  signals: StopSignals;
  /** Seconds of training before the loop finishes early (0: none). */
  timeLimit: number;
}

/** Train until the total or a stop signal; returns the exit code. */
async function loop(ctx: LoopContext): Promise<number> {
  const { trainer, model, opts, runDir, signals } = ctx;
  const cfg = model.cfg, K = cfg.codebook_size;
  const metricsPath = join(runDir, "metrics.jsonl"), evalPath = join(runDir, "eval.jsonl");
  await keepMetrics(metricsPath, trainer.step);
  await keepMetrics(evalPath, trainer.step);
  const progress = new Progress();

  const checkpoints = new CheckpointWriter(runDir, ctx.resumedFrom, false); // not runs/latest
  const saveCheckpoint = async (name: string) => {
    const b = await trainer.buffers();
    const train = { ...trainer.trainerState(), options: { ...opts } };
    return await checkpoints.write(
      name,
      trainer.step,
      { ...b },
      () => encodeVqvaeCheckpoint({ cfg, ...b, train }),
    );
  };
  const evalBatch = Math.min(opts.batch_size, 256);
  const reconGrid = gridWriter(model, ctx.heldOut, evalBatch, runDir);
  const runEval = async (step: number) => {
    const t0 = performance.now();
    const e = await evaluateVqvae(model, ctx.heldOut, { max: opts.eval_images, batch: evalBatch });
    const row = { step, psnr_heldout: e.psnr, mse_heldout: e.mse, images: e.images };
    await Deno.writeTextFile(evalPath, JSON.stringify(row) + "\n", { append: true });
    progress.log(
      `held-out PSNR at step ${step}: ${e.psnr.toFixed(2)} dB (mean over ${e.images} images, ` +
        `MSE ${e.mse.toExponential(3)} on [-1, 1]; ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s)`,
    );
    return e;
  };

  const t0 = performance.now(), startStep = trainer.step;
  let lastLogged = startStep, smooth = NaN;
  const report = async (rows: VqvaeStepMetrics[]) => {
    if (!rows.length) return;
    let text = "";
    const elapsed = (performance.now() - t0) / 1000;
    const ips = (s: number) => (s - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
    for (const r of rows) {
      const loss = r.reconLoss + cfg.beta * r.commitLoss;
      if (!Number.isFinite(loss)) {
        throw checkpoints.lossError(loss, r.step);
      }
      smooth = Number.isNaN(smooth) ? r.reconLoss : 0.95 * smooth + 0.05 * r.reconLoss;
      text += JSON.stringify({
        step: r.step,
        loss,
        recon_loss: r.reconLoss,
        commit_loss: r.commitLoss,
        // PSNR of the batch's mean squared error, images mapped to [0, 1] (MSE/4), peak 1.
        psnr: 10 * Math.log10(4 / r.reconLoss),
        perplexity: r.perplexity,
        codebook_usage: r.codesUsed / K,
        codes_used: r.codesUsed,
        grad_norm: r.gradNorm,
        lr: r.lr,
        images_per_s: ips(r.step),
        elapsed_s: elapsed,
      }) + "\n";
    }
    await Deno.writeTextFile(metricsPath, text, { append: true });
    const last = rows[rows.length - 1], final = last.step === opts.train_steps;
    if (last.step - lastLogged >= opts.log_every || final) {
      lastLogged = last.step;
      const eta = (opts.train_steps - last.step) * opts.batch_size / Math.max(ips(last.step), 1e-9);
      progress.update(
        `step ${last.step}/${opts.train_steps}  recon ${smooth.toFixed(5)} ` +
          `(PSNR ${(10 * Math.log10(4 / smooth)).toFixed(2)} dB)  commit ${
            last.commitLoss.toExponential(2)
          }  perplexity ${last.perplexity.toFixed(1)}  codes ${last.codesUsed}/${K}  ` +
          `${ips(last.step).toFixed(0)} img/s  ETA ${fmtTime(eta)}`,
        final,
      );
    }
  };

  const stopAt = ctx.timeLimit ? performance.now() + 1000 * ctx.timeLimit : Infinity;
  while (trainer.step < opts.train_steps && !signals.signal && performance.now() < stopAt) {
    await trainer.trainStep();
    await report(trainer.takeMetrics());
    const s = trainer.step, last = s === opts.train_steps;
    const due = (every: number) => every > 0 && s % every === 0 && !last;
    const [ckptDue, gridDue, evalDue] = [opts.ckpt_every, opts.sample_every, opts.eval_every]
      .map(due);
    if (ckptDue || gridDue || evalDue) {
      await report(await trainer.flushMetrics());
      if (ckptDue) progress.log(`checkpoint: ${await saveCheckpoint(stepName(s, "safetensors"))}`);
      if (gridDue) await reconGrid(s);
      if (evalDue) await runEval(s);
    }
  }
  await report(await trainer.flushMetrics());
  progress.end();
  if (signals.signal) {
    if (trainer.step === startStep) {
      console.log("no step was trained: nothing to save");
      return signals.exitCode;
    }
    const path = await saveCheckpoint(stepName(trainer.step, "safetensors"));
    console.log(`checkpoint: ${path}\nresume with: deno task train-vqvae --resume ${path}`);
    return signals.exitCode;
  }
  const final = await saveCheckpoint("final.safetensors");
  // The weights alone (no optimizer state): a third of the size, what --vqvae and loadVqvae need.
  const { params, state } = await trainer.buffers();
  const weights = join(runDir, "vqvae.safetensors");
  await writeFileAtomic(weights, encodeVqvaeCheckpoint({ cfg, params, state }));
  const grid = await reconGrid(trainer.step);
  const e = await runEval(trainer.step);
  const early = trainer.step < opts.train_steps ? ` (--time-limit ${ctx.timeLimit} s)` : "";
  console.log(`done: ${trainer.step} steps${early}; final checkpoint ${final}; weights ${weights}`);
  console.log(`reconstructions (originals above reconstructions): ${grid}`);
  console.log(`held-out PSNR ${e.psnr.toFixed(2)} dB over ${e.images} images (${ctx.note})`);
  console.log(`latent flow matching: deno task train --vqvae ${weights} --dataset ${opts.dataset}`);
  return 0;
}

/** The run directory's folders and config.json. */
async function writeRunConfig(
  runDir: string,
  cfg: VQVAEConfig,
  opts: VqvaeTrainOptions,
  data: { train: Dataset; heldOut: Dataset; note: string },
  from?: string,
) {
  await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
  await Deno.mkdir(join(runDir, "samples"), { recursive: true });
  const dataset = {
    name: opts.dataset,
    train: data.train.length,
    held_out: data.heldOut.length,
    held_out_from: data.note,
  };
  const config = {
    vqvae: cfg,
    train: opts,
    dataset,
    class_names: data.train.classNames ?? [],
    resumed_from: from,
  };
  await Deno.writeTextFile(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
}

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
