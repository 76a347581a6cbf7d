/**
 * `deno task train-vqvae`: trains the VQ-VAE (src/vqvae) whose encoder latent flow matching uses:
 * checkpoints with exact resume, metrics rows (reconstruction loss, PSNR, codebook usage,
 * perplexity), held-out PSNR, and reconstruction grids (originals above reconstructions).
 * `--bench` times the training step instead. Run with --help for the flags.
 */
import { dirname, join } from "node:path";
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import { ArrayDataset, type Dataset } from "../src/data/dataset.ts";
import { holdOut } from "../src/data/split.ts";
import { fashionMnistFromBytes } from "../src/data/fashion_mnist.ts";
import { cifar10FromBytes } from "../src/data/cifar10.ts";
import { DEBIAN_FASHION_MNIST, loadDataset } from "../src/io/datasets.ts";
import { loadEmoji } from "../src/io/emoji.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { imageGridPng } from "../src/io/png.ts";
import { resolveVqvaeConfig, type VQVAEConfig } from "../src/vqvae/config.ts";
import { parameterCount } from "../src/vqvae/params.ts";
import {
  type VqvaeStepMetrics,
  VqvaeTrainer,
  type VqvaeTrainerState,
} from "../src/vqvae/trainer.ts";
import { evaluate, VQVAE } from "../src/vqvae/model.ts";
import {
  decodeVqvaeCheckpoint,
  encodeVqvaeCheckpoint,
  type VqvaeCheckpoint,
} from "../src/vqvae/checkpoint.ts";
import {
  VQVAE_CPU_DEFAULTS,
  VQVAE_GPU_DEFAULTS,
  VQVAE_OPTIONS,
  type VqvaeTrainOptions,
} from "../src/vqvae/options.ts";
import { convert, type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";
import { Timer } from "./bench.ts";

const SPECS: Record<string, FlagSpec> = {};
for (const [name, row] of Object.entries(VQVAE_OPTIONS)) {
  SPECS[name] = { kind: row.kind, help: row.help, choices: row.choices, aliases: row.aliases };
}
SPECS.config = { kind: "string", help: "JSON file with any of these options (flags override it)" };

/** Options that define the network (fixed by a checkpoint on resume). */
const MODEL_KEYS = [
  "channels",
  "res_blocks",
  "groups",
  "act",
  "codebook_size",
  "code_dim",
  "beta",
  "ema_decay",
  "dead_after",
] as const;

const USAGE = "Usage: deno task train-vqvae [options]\n\n" +
  "Trains a VQ-VAE (encoder with two stride-2 downsamplings, EMA vector quantizer, mirrored\n" +
  "decoder) on images; its encoder gives the latent space of latent flow matching. Defaults\n" +
  "shown are the GPU ones; a software adapter uses a CPU profile (channels 16, 1 res block,\n" +
  "4 groups, batch 16, lr 1e-3, 300 steps, evaluation on 256 held-out images).";

async function readConfigFile(path: string): Promise<Partial<VqvaeTrainOptions>> {
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
  return out as Partial<VqvaeTrainOptions>;
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

/** The newest checkpoint of a run directory. */
async function latestIn(runDir: string): Promise<string | undefined> {
  const files: { path: string; mtime: number }[] = [];
  try {
    for await (const e of Deno.readDir(join(runDir, "checkpoints"))) {
      if (!e.isFile || !e.name.endsWith(".safetensors")) continue;
      const path = join(runDir, "checkpoints", e.name);
      files.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    }
  } catch {
    return undefined;
  }
  files.sort((a, b) => b.mtime - a.mtime);
  return files[0]?.path;
}

/** A checkpoint file, a run directory, or "auto": the newest VQ-VAE run under `out`. */
async function findResume(resume: string, out: string): Promise<string> {
  if (resume === "auto") {
    const runs: { path: string; mtime: number }[] = [];
    try {
      for await (const e of Deno.readDir(out)) {
        if (!e.isDirectory) continue;
        const dir = join(out, e.name);
        const cfg = await Deno.readTextFile(join(dir, "config.json")).catch(() => "");
        if (!cfg.includes('"vqvae"')) continue;
        const ck = await latestIn(dir);
        if (ck) runs.push({ path: ck, mtime: (await Deno.stat(ck)).mtime?.getTime() ?? 0 });
      }
    } catch { /* no runs yet */ }
    runs.sort((a, b) => b.mtime - a.mtime);
    if (!runs.length) {
      throw new UsageError(`--resume auto: no VQ-VAE run with a checkpoint under ${out}/`);
    }
    return runs[0].path;
  }
  const st = await Deno.stat(resume).catch(() => undefined);
  if (!st) throw new UsageError(`--resume ${resume}: no such file or directory`);
  if (st.isDirectory) {
    const ck = await latestIn(resume);
    if (!ck) {
      throw new UsageError(`--resume ${resume}: no checkpoints/*.safetensors in that directory`);
    }
    return ck;
  }
  return resume;
}

/** Training images and held-out images, and where the held-out ones come from. */
async function loadSplits(
  o: VqvaeTrainOptions,
): Promise<{ train: Dataset; heldOut: Dataset; note: string }> {
  const log = (l: string) => console.log(l);
  const tenth = (ds: Dataset, what: string) => {
    if (!(ds instanceof ArrayDataset)) throw new Error(`${what}: cannot hold out images`);
    const s = holdOut(ds);
    return { train: s.train, heldOut: s.heldOut, note: `a fixed 10% of ${what} held out` };
  };
  switch (o.dataset) {
    case "emoji": {
      const r = await loadEmoji({ dir: o.data, imageSize: o.image_size ?? 32, log });
      return { train: r.train, heldOut: r.heldOut, note: "10% of each category held out" };
    }
    case "fashion-mnist": {
      const train = await loadDataset("fashion-mnist", o.data);
      const dir = o.data ?? DEBIAN_FASHION_MNIST;
      const [im, lb] = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"].map((f) =>
        join(dir, f)
      );
      if (train.length >= 60000 && await exists(im) && await exists(lb)) {
        const test = await fashionMnistFromBytes(await Deno.readFile(im), await Deno.readFile(lb), [
          im,
          lb,
        ]);
        return { train, heldOut: test, note: `the Fashion-MNIST test set (${im})` };
      }
      return tenth(train, "the Fashion-MNIST images");
    }
    case "cifar10": {
      if (!o.data) throw new UsageError("cifar10: give the folder of the .bin batches with --data");
      const train = await loadDataset("cifar10", o.data);
      for (
        const p of [
          join(o.data, "test_batch.bin"),
          join(o.data, "cifar-10-batches-bin", "test_batch.bin"),
        ]
      ) {
        if (await exists(p)) {
          return { train, heldOut: cifar10FromBytes([await Deno.readFile(p)], [p]), note: p };
        }
      }
      return tenth(train, "CIFAR-10");
    }
    case "default":
      return tenth(await loadDataset("default"), "the embedded Fashion-MNIST subset");
    case "folder":
      return tenth(await loadDataset("folder", o.data, { imageSize: o.image_size }), o.data ?? "");
    default:
      throw new UsageError(`unknown dataset ${o.dataset}`);
  }
}

function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

const pad6 = (n: number) => String(n).padStart(6, "0");

/** --bench: median time of a training step on random images. */
async function bench(k: Kernels, o: VqvaeTrainOptions, explicitSteps: boolean): Promise<void> {
  const cfg = resolveVqvaeConfig({
    ...Object.fromEntries(MODEL_KEYS.map((key) => [key, o[key]])),
    image_size: o.image_size ?? 32,
    in_channels: o.in_channels ?? 3,
  });
  const n = Math.max(o.batch_size, 256), per = cfg.in_channels * cfg.image_size ** 2;
  const pixels = Uint8Array.from({ length: n * per }, (_, i) => (i * 2654435761) >>> 24);
  const data = new ArrayDataset(pixels, new Int32Array(n), cfg.in_channels, cfg.image_size, 0);
  const trainer = new VqvaeTrainer(k, cfg, { ...o, log_every: 1000 }, data);
  const iters = explicitSteps ? o.train_steps : 10, repeats = 5;
  for (let i = 0; i < 3; i++) await trainer.trainStep();
  await k.device.queue.onSubmittedWorkDone();
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < iters; i++) await trainer.trainStep();
    await k.device.queue.onSubmittedWorkDone();
    ms.push((performance.now() - t0) / iters);
  }
  const med = ms.toSorted((a, b) => a - b)[Math.floor(repeats / 2)];
  // Per-kernel GPU time: each dispatch in its own pass (timestamp queries where supported).
  const timer = new Timer(k);
  const kms = await timer.passes(trainer.stepDispatches.map((d) => [d]));
  const byLabel = new Map<string, { ms: number; n: number }>();
  trainer.stepDispatches.forEach((d, i) => {
    const e = byLabel.get(d.label) ?? { ms: 0, n: 0 };
    e.ms += kms[i];
    e.n++;
    byLabel.set(d.label, e);
  });
  const total = kms.reduce((a, b) => a + b, 0);
  const breakdown = [...byLabel.entries()].sort((a, b) => b[1].ms - a[1].ms);
  const result = {
    adapter: k.gpu.name,
    image_size: cfg.image_size,
    in_channels: cfg.in_channels,
    channels: cfg.channels,
    res_blocks: cfg.res_blocks,
    codebook_size: cfg.codebook_size,
    code_dim: cfg.code_dim,
    batch_size: o.batch_size,
    parameters: parameterCount(cfg),
    step_ms: med,
    images_per_s: o.batch_size / (med / 1e3),
    dispatches: trainer.dispatchCount,
    allocated_bytes: k.allocatedBytes,
    breakdown: breakdown.map(([kernel, e]) => ({ kernel, calls: e.n, ms: e.ms })),
  };
  console.log(
    `VQ-VAE training step: ${med.toFixed(2)} ms (median of ${repeats}×${iters}), ` +
      `${result.images_per_s.toFixed(0)} images/s, ${trainer.dispatchCount} dispatches`,
  );
  console.log(
    `per-kernel (${timer.timestamps ? "timestamp queries" : "wall clock"}, each dispatch in ` +
      `its own pass; sum ${total.toFixed(2)} ms):`,
  );
  for (const [label, e] of breakdown.slice(0, 16)) {
    console.log(
      `  ${label.padEnd(22)} ${String(e.n).padStart(4)} ${e.ms.toFixed(3).padStart(9)} ms ` +
        `${(100 * e.ms / total).toFixed(1).padStart(5)}%`,
    );
  }
  console.log(`JSON: ${JSON.stringify(result)}`);
}

async function main() {
  const { values, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(
      helpText(USAGE, SPECS, VQVAE_GPU_DEFAULTS as unknown as Record<string, unknown>),
    );
    return;
  }
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const fileOpts = values.config ? await readConfigFile(String(values.config)) : {};
  const flags = { ...values } as Partial<VqvaeTrainOptions> & { config?: string };
  delete flags.config;
  const given = { ...fileOpts, ...flags };
  const defaults = gpu.isFallback ? VQVAE_CPU_DEFAULTS : VQVAE_GPU_DEFAULTS;
  console.log(`adapter: ${describeGpu(gpu)}`);

  let resumeFrom: { path: string; ckpt: VqvaeCheckpoint } | undefined;
  const out0 = String(given.out ?? defaults.out);
  if (given.resume && !given.bench) {
    const path = await findResume(String(given.resume), out0);
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw new UsageError(`--resume ${path}: ${(e as Error).message}`);
    }
    const ckpt = decodeVqvaeCheckpoint(bytes, path);
    if (!ckpt.m || !ckpt.v || !ckpt.train) {
      throw new UsageError(`--resume ${path}: not a training checkpoint (no optimizer state)`);
    }
    for (const key of MODEL_KEYS) {
      if (given[key] !== undefined && given[key] !== ckpt.cfg[key]) {
        throw new UsageError(
          `--${key.replaceAll("_", "-")} ${given[key]} differs from the checkpoint's ${
            ckpt.cfg[key]
          } (${path}); drop the flag to resume`,
        );
      }
    }
    resumeFrom = { path, ckpt };
  }
  const saved = (resumeFrom?.ckpt.train?.options ?? {}) as Partial<VqvaeTrainOptions>;
  const opts: VqvaeTrainOptions = { ...defaults, ...saved, ...given } as VqvaeTrainOptions;
  delete opts.resume;
  if (opts.bench) return bench(k, opts, given.train_steps !== undefined);
  if (gpu.isFallback && !resumeFrom) {
    console.log("software adapter: using the CPU profile (a GPU trains the full-size network)");
  }

  const { train, heldOut, note } = await loadSplits(opts);
  let cfg: VQVAEConfig;
  try {
    cfg = resumeFrom?.ckpt.cfg ?? resolveVqvaeConfig({
      ...Object.fromEntries(MODEL_KEYS.map((key) => [key, opts[key]])),
      image_size: train.imageSize,
      in_channels: train.channels,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  if (cfg.image_size !== train.imageSize || cfg.in_channels !== train.channels) {
    throw new UsageError(
      `the checkpoint's VQ-VAE is for ${cfg.in_channels}×${cfg.image_size}² images but the ` +
        `dataset's are ${train.channels}×${train.imageSize}²`,
    );
  }

  const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
  const runDir = resumeFrom
    ? dirname(dirname(resumeFrom.path))
    : join(opts.out, opts.name ?? `vqvae-${stamp}`);
  await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
  await Deno.mkdir(join(runDir, "samples"), { recursive: true });
  await Deno.writeTextFile(
    join(runDir, "config.json"),
    JSON.stringify(
      {
        vqvae: cfg,
        train: opts,
        dataset: {
          name: opts.dataset,
          train: train.length,
          held_out: heldOut.length,
          held_out_from: note,
        },
        class_names: train.classNames ?? [],
      },
      null,
      2,
    ) + "\n",
  );

  const trainer = new VqvaeTrainer(k, cfg, opts, train);
  if (resumeFrom) {
    const c = resumeFrom.ckpt;
    trainer.restore(
      { params: c.params, m: c.m!, v: c.v!, state: c.state },
      c.train as VqvaeTrainerState,
    );
    console.log(`resumed from ${resumeFrom.path} at step ${trainer.step}`);
  }
  const model = new VQVAE(k, cfg, trainer.params, trainer.state);
  const K = cfg.codebook_size;
  console.log(
    `model: VQ-VAE channels=${cfg.channels} res_blocks=${cfg.res_blocks} K=${K} D=${cfg.code_dim} ` +
      `(${cfg.in_channels}×${cfg.image_size}² → ${cfg.code_dim}×${cfg.image_size / 4}²), ` +
      `${parameterCount(cfg).toLocaleString("en-US")} parameters; data: ${train.length} images, ` +
      `${heldOut.length} held out (${note}); batch ${opts.batch_size}; ` +
      `${trainer.dispatchCount} dispatches a step`,
  );
  console.log(`run directory: ${runDir}`);

  // Keep metric and eval rows up to the resumed step (a killed run may have logged past it).
  const keep = async (file: string) => {
    const path = join(runDir, file);
    const rows: string[] = [];
    const text = await Deno.readTextFile(path).catch(() => "");
    for (const line of text.split("\n")) {
      try {
        if (line.trim() && JSON.parse(line).step <= trainer.step) rows.push(line);
      } catch { /* a row cut short by a kill */ }
    }
    await Deno.writeTextFile(path, rows.map((r) => r + "\n").join(""));
    return path;
  };
  const metricsPath = await keep("metrics.jsonl");
  const evalPath = await keep("eval.jsonl");

  let lastGood: string | undefined = resumeFrom?.path;
  const saveCheckpoint = async (name: string) => {
    const b = await trainer.buffers();
    for (const [which, arr] of Object.entries(b)) {
      const i = arr.findIndex((v: number) => !Number.isFinite(v));
      if (i >= 0) {
        throw new Error(
          `${which} has a non-finite value at step ${trainer.step}: not writing a checkpoint` +
            (lastGood ? `; the last good one is ${lastGood}` : ""),
        );
      }
    }
    const path = join(runDir, "checkpoints", name);
    await writeFileAtomic(
      path,
      encodeVqvaeCheckpoint({
        cfg,
        ...b,
        train: { ...trainer.trainerState(), options: { ...opts } },
      }),
    );
    lastGood = path;
    return path;
  };

  // Reconstruction grid: fixed held-out images, each row of originals above its reconstructions.
  const nGrid = Math.min(32, heldOut.length), cols = Math.min(8, nGrid);
  const per = cfg.in_channels * cfg.image_size ** 2;
  const gridX = new Float32Array(nGrid * per);
  for (let i = 0; i < nGrid; i++) gridX.set(heldOut.get(i).image, i * per);
  const evalBatch = Math.min(opts.batch_size, 256);
  const reconGrid = async (step: number) => {
    const r = await model.reconstruct(gridX, evalBatch);
    const pairs = Math.ceil(nGrid / cols);
    const cells = new Float32Array(2 * pairs * cols * per).fill(1);
    for (let p = 0; p < pairs; p++) {
      for (let c = 0; c < cols && p * cols + c < nGrid; c++) {
        const i = p * cols + c;
        cells.set(gridX.subarray(i * per, (i + 1) * per), (2 * p * cols + c) * per);
        cells.set(r.subarray(i * per, (i + 1) * per), ((2 * p + 1) * cols + c) * per);
      }
    }
    const png = await imageGridPng(
      cells,
      { channels: cfg.in_channels, size: cfg.image_size },
      2 * pairs,
      cols,
      cfg.image_size < 64 ? 2 : 1,
    );
    const path = join(runDir, "samples", `recon_${pad6(step)}.png`);
    await writeFileAtomic(path, png);
    return path;
  };
  const runEval = async (step: number) => {
    const t0 = performance.now();
    const e = await evaluate(model, heldOut, { max: opts.eval_images, batch: evalBatch });
    const row = { step, psnr_heldout: e.psnr, mse_heldout: e.mse, images: e.images };
    await Deno.writeTextFile(evalPath, JSON.stringify(row) + "\n", { append: true });
    console.log(
      `held-out PSNR at step ${step}: ${e.psnr.toFixed(2)} dB (mean over ${e.images} images, ` +
        `MSE ${e.mse.toExponential(3)} on [-1, 1]; ${
          ((performance.now() - t0) / 1000).toFixed(1)
        } s)`,
    );
    return e;
  };

  let stop = false;
  const onSigint = () => {
    if (stop) Deno.exit(130);
    stop = true;
    console.log("\ninterrupted: writing a checkpoint (Ctrl-C again to quit at once)");
  };
  Deno.addSignalListener("SIGINT", onSigint);

  const isTty = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  const t0 = performance.now();
  const startStep = trainer.step;
  let lastLogged = startStep;
  let smooth = NaN;
  const report = async (rows: VqvaeStepMetrics[]) => {
    if (!rows.length) return;
    let text = "";
    const elapsed = (performance.now() - t0) / 1000;
    for (const r of rows) {
      const loss = r.reconLoss + cfg.beta * r.commitLoss;
      if (!Number.isFinite(loss)) {
        throw new Error(
          `loss is ${loss} at step ${r.step}: stopping` +
            (lastGood
              ? `; the last good checkpoint is ${lastGood}`
              : " (no checkpoint was written yet)"),
        );
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
        images_per_s: (r.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9),
        elapsed_s: elapsed,
      }) + "\n";
    }
    await Deno.writeTextFile(metricsPath, text, { append: true });
    const last = rows[rows.length - 1];
    if (last.step - lastLogged >= opts.log_every || last.step === opts.train_steps) {
      lastLogged = last.step;
      const ips = (last.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
      const eta = (opts.train_steps - last.step) * opts.batch_size / Math.max(ips, 1e-9);
      const line = `step ${last.step}/${opts.train_steps}  recon ${smooth.toFixed(5)} ` +
        `(PSNR ${(10 * Math.log10(4 / smooth)).toFixed(2)} dB)  commit ${
          last.commitLoss.toExponential(2)
        }  perplexity ${last.perplexity.toFixed(1)}  codes ${last.codesUsed}/${K}  ` +
        `${ips.toFixed(0)} img/s  ETA ${fmtTime(eta)}`;
      if (isTty) await Deno.stdout.write(enc.encode(`\r${line}\x1b[K`));
      else console.log(line);
    }
  };

  while (trainer.step < opts.train_steps && !stop) {
    await trainer.trainStep();
    await report(trainer.takeMetrics());
    const s = trainer.step;
    const last = s === opts.train_steps;
    const ckptDue = opts.ckpt_every > 0 && s % opts.ckpt_every === 0 && !last;
    const gridDue = opts.sample_every > 0 && s % opts.sample_every === 0 && !last;
    const evalDue = opts.eval_every > 0 && s % opts.eval_every === 0 && !last;
    if (ckptDue || gridDue || evalDue) {
      await report(await trainer.flushMetrics());
      if (isTty) console.log();
      if (ckptDue) {
        console.log(`checkpoint: ${await saveCheckpoint(`step_${pad6(s)}.safetensors`)}`);
      }
      if (gridDue) await reconGrid(s);
      if (evalDue) await runEval(s);
    }
  }
  await report(await trainer.flushMetrics());
  if (isTty) console.log();
  Deno.removeSignalListener("SIGINT", onSigint);
  if (stop) {
    const path = await saveCheckpoint(`step_${pad6(trainer.step)}.safetensors`);
    console.log(`checkpoint: ${path}\nresume with: deno task train-vqvae --resume ${path}`);
    Deno.exit(130);
  }
  const final = await saveCheckpoint("final.safetensors");
  const grid = await reconGrid(trainer.step);
  const e = await runEval(trainer.step);
  console.log(`done: ${trainer.step} steps; final checkpoint ${final}`);
  console.log(`reconstructions (originals above reconstructions): ${grid}`);
  console.log(`held-out PSNR ${e.psnr.toFixed(2)} dB over ${e.images} images (${note})`);
}

if (import.meta.main) await runMain(main);
