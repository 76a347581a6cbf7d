/**
 * The `train-vqvae` training loop: steps until the total, --time-limit or a stop signal; metrics
 * rows (reconstruction loss, PSNR, codebook usage, perplexity), progress lines, checkpoints,
 * reconstruction grids and held-out PSNR on their schedules; at the end the final checkpoint and
 * the weights alone (`vqvae.safetensors`).
 */
import { join } from "node:path";
import {
  type Dataset,
  encodeVqvaeCheckpoint,
  evaluateVqvae,
  imageGridPng,
  type VQVAE,
  type VqvaeStepMetrics,
  type VqvaeTrainer,
  type VqvaeTrainOptions,
} from "../mod.ts";
import { writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";
import { CheckpointWriter } from "./checkpoint_writer.ts";
import { fmtTime, keepMetrics, stepName, type StopSignals } from "./train_loop.ts";

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

export interface LoopContext {
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
export async function loop(ctx: LoopContext): Promise<number> {
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
