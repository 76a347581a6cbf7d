/**
 * The training loop of `deno task train`: steps, metrics rows, progress lines, checkpoints, sample
 * grids and the loss curve; SIGINT and SIGTERM write a checkpoint of the current step and exit
 * 130 / 143; a non-finite loss or weight stops the run naming the last good checkpoint.
 */
import { join } from "node:path";
import {
  type DiTConfig,
  encodeCheckpoint,
  imageGridPng,
  lossCurvePng,
  type StepMetrics,
  type Trainer,
  type TrainingCheckpoint,
  type TrainOptions,
} from "../mod.ts";
import { exitNow, writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";
import { CheckpointWriter } from "./checkpoint_writer.ts";
import { samplerFor } from "./sampling.ts";

const EXIT_CODE: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/** Stop requests: the first SIGINT/SIGTERM asks the loop to stop, a second one exits at once. */
export class StopSignals {
  signal?: "SIGINT" | "SIGTERM";
  private readonly handlers: [Deno.Signal, () => void][] = [];

  constructor() {
    // Windows has no SIGTERM listener (Deno supports SIGINT and SIGBREAK there).
    const names: ("SIGINT" | "SIGTERM")[] = Deno.build.os === "windows"
      ? ["SIGINT"]
      : ["SIGINT", "SIGTERM"];
    for (const name of names) {
      const fn = () => {
        if (this.signal) exitNow(EXIT_CODE[name]);
        this.signal = name;
        console.log(
          `\ninterrupted (${name}): writing a checkpoint of the current step ` +
            "(again to quit at once, without one)",
        );
      };
      Deno.addSignalListener(name, fn);
      this.handlers.push([name, fn]);
    }
  }

  get exitCode(): number {
    return this.signal ? EXIT_CODE[this.signal] : 0;
  }

  dispose(): void {
    for (const [name, fn] of this.handlers) Deno.removeSignalListener(name, fn);
    this.handlers.length = 0;
  }
}

export interface LoopContext {
  trainer: Trainer;
  cfg: DiTConfig;
  opts: TrainOptions;
  runDir: string;
  /** The checkpoint this process resumed from. */
  resumedFrom?: string;
  signals: StopSignals;
  /** Seconds of training before the loop finishes early, as at the last step (0: none). */
  timeLimit?: number;
  /** Stored in every checkpoint: a latent model's space, the class names. */
  extra?: Pick<TrainingCheckpoint, "latent" | "classNames">;
}

export const stepName = (s: number, ext: string): string =>
  `step_${String(s).padStart(6, "0")}.${ext}`;

export function fmtTime(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  return h > 0 ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(sec).padStart(2, "0")}s`;
}

/** metrics.jsonl rows up to `step` (a killed run may have logged past its checkpoint). */
export async function keepMetrics(path: string, step: number): Promise<[number, number][]> {
  const points: [number, number][] = [], kept: string[] = [];
  const text = await Deno.readTextFile(path).catch(() => "");
  for (const line of text.split("\n")) {
    let r;
    try {
      r = JSON.parse(line);
    } catch {
      continue; // blank, or a row cut short by a kill
    }
    if (r.step <= step) {
      points.push([r.step, r.loss]);
      kept.push(line);
    }
  }
  await Deno.writeTextFile(path, kept.map((l) => l + "\n").join(""));
  return points;
}

/** Train until `opts.train_steps` or a stop signal; returns the exit code. */
export async function trainLoop(ctx: LoopContext): Promise<number> {
  const { trainer, cfg, opts, runDir, signals } = ctx;
  const metricsPath = join(runDir, "metrics.jsonl");
  const lossPoints = await keepMetrics(metricsPath, trainer.step);
  const progress = new Progress();

  const checkpoints = new CheckpointWriter(runDir, ctx.resumedFrom);
  const saveCheckpoint = async (name: string) => {
    const bufs = await trainer.buffers();
    const state = { ...(await trainer.state()), options: { ...opts } };
    return await checkpoints.write(
      name,
      trainer.step,
      bufs,
      () => encodeCheckpoint({ cfg, ...bufs, state, ...ctx.extra }),
    );
  };
  const sampler = samplerFor(trainer.ema);
  const sampleGrid = async (name: string) => {
    const K = cfg.num_classes;
    const rows = K > 0 ? Math.min(K, 10) : 8, cols = 8;
    const labels = Array.from({ length: rows * cols }, (_, i) => K > 0 ? Math.floor(i / cols) : 0);
    const { images, shape: [, channels, size] } = await sampler.generate({
      labels,
      steps: opts.num_sampling_steps,
      cfgScale: opts.cfg_scale,
      seed: opts.seed,
      batch: 80,
    });
    const png = await imageGridPng(images, { channels, size }, rows, cols, size < 64 ? 2 : 1);
    await writeFileAtomic(join(runDir, "samples", name), png);
  };
  const drawLoss = async () =>
    await writeFileAtomic(join(runDir, "loss.png"), await lossCurvePng(lossPoints));

  let smooth = NaN, skips = 0;
  const t0 = performance.now(), startStep = trainer.step;
  let lastLogged = startStep;
  const report = async (rows: StepMetrics[]) => {
    if (!rows.length) return;
    let text = "";
    const elapsed = (performance.now() - t0) / 1000;
    for (const r of rows) {
      if (!Number.isFinite(r.loss)) {
        throw checkpoints.lossError(r.loss, r.step);
      }
      smooth = Number.isNaN(smooth) ? r.loss : 0.95 * smooth + 0.05 * r.loss;
      lossPoints.push([r.step, r.loss]);
      const ips = (r.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
      if (r.skipped) {
        skips++;
        progress.log(
          `step ${r.step}: f16 gradient overflow at loss scale ${r.lossScale}: update skipped, ` +
            `scale halved`,
        );
      }
      text += JSON.stringify({
        step: r.step,
        loss: r.loss,
        loss_smooth: smooth,
        lr: r.lr,
        grad_norm: r.gradNorm,
        ...(r.lossScale !== undefined ? { loss_scale: r.lossScale, skipped: r.skipped } : {}),
        images_per_s: ips,
        elapsed_s: elapsed,
      }) + "\n";
    }
    await Deno.writeTextFile(metricsPath, text, { append: true });
    const last = rows[rows.length - 1];
    const final = last.step === opts.train_steps;
    if (last.step - lastLogged >= opts.log_every || final) {
      lastLogged = last.step;
      const ips = (last.step - startStep) * opts.batch_size / Math.max(elapsed, 1e-9);
      const eta = (opts.train_steps - last.step) * opts.batch_size / Math.max(ips, 1e-9);
      progress.update(
        `step ${last.step}/${opts.train_steps}  loss ${smooth.toFixed(4)}  ` +
          `grad ${last.gradNorm.toFixed(3)}  lr ${last.lr.toExponential(2)}  ` +
          (last.lossScale !== undefined ? `scale ${last.lossScale}  skipped ${skips}  ` : "") +
          `${ips.toFixed(1)} img/s  ETA ${fmtTime(eta)}`,
        final,
      );
    }
  };

  const stopAt = ctx.timeLimit ? performance.now() + 1000 * ctx.timeLimit : Infinity;
  while (trainer.step < opts.train_steps && !signals.signal && performance.now() < stopAt) {
    await trainer.trainStep();
    await report(trainer.takeMetrics());
    const s = trainer.step;
    const ckptDue = opts.ckpt_every > 0 && s % opts.ckpt_every === 0 && s < opts.train_steps;
    const sampleDue = opts.sample_every > 0 && s % opts.sample_every === 0;
    if (ckptDue || sampleDue) {
      await report(await trainer.flushMetrics());
      if (ckptDue) progress.log(`checkpoint: ${await saveCheckpoint(stepName(s, "safetensors"))}`);
      if (sampleDue) {
        await sampleGrid(stepName(s, "png"));
        await drawLoss();
      }
    }
  }
  await report(await trainer.flushMetrics());
  progress.end();
  if (signals.signal) {
    if (trainer.step === startStep) {
      console.log(`no step was trained: nothing to save`);
      return signals.exitCode;
    }
    const path = await saveCheckpoint(stepName(trainer.step, "safetensors"));
    await drawLoss();
    console.log(`checkpoint: ${path}\nresume with: deno task train --resume ${path}`);
    return signals.exitCode;
  }
  const final = await saveCheckpoint("final.safetensors");
  if (opts.sample_every > 0 && trainer.step % opts.sample_every !== 0) {
    await sampleGrid(stepName(trainer.step, "png"));
  }
  await drawLoss();
  const early = trainer.step < opts.train_steps ? ` (--time-limit ${ctx.timeLimit} s)` : "";
  console.log(`done: ${trainer.step} steps${early}; final checkpoint ${final}`);
  console.log(
    (opts.sample_every > 0 ? `samples: ${join(runDir, "samples")}/  ` : "") +
      `loss curve: ${join(runDir, "loss.png")}`,
  );
  console.log(
    `generate: deno task generate --checkpoint ${runDir} ${
      cfg.num_classes > 0 ? "--class_grid" : "--num_samples 16"
    }`,
  );
  return 0;
}
