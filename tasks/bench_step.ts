/**
 * `deno task bench`'s training step: its wall and GPU time (the trainer's own step function, with
 * the run's micro-batches, activation checkpointing and optimizer), a per-kernel breakdown from
 * timestamp queries, and its memory (what the trainer allocated, activations apart).
 */
import {
  ArrayDataset,
  CPU_DEFAULTS,
  createModel,
  type DiTConfig,
  formatBytes,
  GPU_DEFAULTS,
  type Kernels,
  type Precision,
  Trainer,
  type TrainOptions,
} from "../mod.ts";
import { kernelBreakdown, median, type Timer, timeSteps } from "./bench_timing.ts";

/** What the step runs with besides the model (bench's flags). */
export interface StepFlags {
  batch_size: number;
  micro_batch_size?: number;
  grad_checkpointing?: boolean;
  optimizer: "adamw" | "muon";
  iters: number;
  repeats: number;
}

/** The training options of a bench step on this adapter. */
export function benchOptions(k: Kernels, o: StepFlags): TrainOptions {
  return {
    ...(k.gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS),
    batch_size: o.batch_size,
    micro_batch_size: o.micro_batch_size,
    grad_checkpointing: o.grad_checkpointing ?? false,
    optimizer: o.optimizer,
    log_every: 1000,
    train_steps: 1e9,
  };
}

/** (a) the training step, (d) its per-kernel breakdown unless `breakdown` is false, (e) memory. */
export async function benchStep(
  k: Kernels,
  timer: Timer,
  cfg: DiTConfig,
  o: StepFlags,
  breakdown: boolean,
  precision: Precision,
): Promise<Record<string, unknown>> {
  const n = Math.max(64, o.batch_size);
  const pixels = new Uint8Array(n * cfg.in_channels * cfg.image_size ** 2)
    .map((_, i) => (i * 2654435761) >>> 24);
  const labels = Int32Array.from({ length: n }, (_, i) => i % Math.max(1, cfg.num_classes));
  const data = new ArrayDataset(pixels, labels, cfg.in_channels, cfg.image_size, cfg.num_classes);
  const opts = benchOptions(k, o);
  const before = k.allocatedBytes;
  const model = await createModel(cfg, { seed: opts.seed, kernels: k, precision });
  const trainer = new Trainer(model, opts, data);
  // Every buffer the step owns: the flat buffers (weights and their f16 copy, gradients, Adam m
  // and v, EMA and its copy) and the activations and scratch tensors it allocated.
  const flats = [model.params, model.params16, trainer.grads, trainer.m, trainer.v];
  const ema = [trainer.ema.params, trainer.ema.params16];
  const activations = k.allocatedBytes - before;
  const memory = [...flats, ...ema].reduce((a, b) => a + (b?.buffer.size ?? 0), 0) + activations;
  const stepMs = await timeSteps(k, () => trainer.trainStep(), o.iters, o.repeats);
  // GPU time needs timestamp queries (a wall-clock "GPU time" would include the submit-and-wait
  // round trip); it is shown only if it fits in the wall time of its own submission and of a
  // pipelined step, which some drivers' timestamps (e.g. software adapters') do not.
  let gpuMs: number | null = null, why = "no timestamp queries";
  if (timer.timestamps) {
    const t0 = performance.now();
    const per = await timer.passes(Array.from({ length: 3 }, () => trainer.stepDispatches));
    const wall = performance.now() - t0;
    const fits = per.reduce((a, b) => a + b, 0) <= wall && median(per) <= stepMs;
    if (fits) gpuMs = median(per);
    else why = "the adapter's timestamps exceed the wall time";
  }
  const ips = o.batch_size / (stepMs / 1e3);
  const hostMs = trainer.hostMsPerStep;
  const how = [
    trainer.M < trainer.B ? `${trainer.B / trainer.M} micro-batches of ${trainer.M}` : "",
    opts.grad_checkpointing ? "activation checkpointing" : "",
    opts.optimizer === "muon" ? "Muon + AdamW" : "",
  ].filter(Boolean).join(", ");
  console.log(
    `training step (${precision}${how ? `; ${how}` : ""}): ${stepMs.toFixed(2)} ms wall` +
      (gpuMs !== null
        ? ` (GPU ${gpuMs.toFixed(2)} ms; wall/GPU ${(stepMs / gpuMs).toFixed(3)})`
        : ` (no GPU time: ${why})`) +
      `, ${ips.toFixed(1)} images/s, host ${hostMs.work.toFixed(2)} ms a step (draw, upload, ` +
      `encode) + ${hostMs.submit.toFixed(2)} ms in submit, ${trainer.dispatchCount} dispatches, ` +
      `${formatBytes(memory)} of buffers (weights${precision === "f16" ? " f32 + f16" : ""}, ` +
      `gradients, optimizer, EMA; activations and scratch ${formatBytes(activations)})`,
  );
  const result: Record<string, unknown> = {
    precision,
    step: {
      ms: stepMs,
      gpu_ms: gpuMs,
      host_ms: hostMs.work,
      submit_ms: hostMs.submit,
      images_per_s: ips,
      dispatches: trainer.dispatchCount,
      memory_bytes: memory,
      activation_bytes: activations,
      micro_batch_size: trainer.M,
      grad_checkpointing: opts.grad_checkpointing,
      optimizer: opts.optimizer,
    },
  };
  if (!breakdown) return result;
  if (gpuMs === null) {
    console.log(`per-kernel breakdown: skipped (${why})`);
    return result;
  }
  const { rows, total } = await kernelBreakdown(timer, trainer.stepDispatches);
  console.log(
    `\nper-kernel breakdown (each dispatch in its own pass; sum ${total.toFixed(2)} ms):`,
  );
  console.log(`  ${"kernel".padEnd(44)} ${"calls".padStart(5)} ${"ms".padStart(9)} share`);
  for (const e of rows.slice(0, 48)) {
    console.log(
      `  ${e.kernel.padEnd(44)} ${String(e.calls).padStart(5)} ${e.ms.toFixed(3).padStart(9)} ` +
        `${(100 * e.ms / total).toFixed(1).padStart(5)}%`,
    );
  }
  result.breakdown = rows;
  return result;
}
