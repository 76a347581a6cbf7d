/**
 * The memory of a training run, known before it starts: the Trainer built on a recording device
 * (src/gpu/sizing.ts: nothing allocated, nothing run), so the figure is exactly what the run
 * would allocate. WebGPU reports no memory size, only limits: a run whose largest buffer exceeds
 * `maxBufferSize` or whose largest storage binding exceeds `maxStorageBufferBindingSize` cannot
 * start, and an allocation beyond the device's memory fails in an `out-of-memory` error scope.
 * Either way the run stops with one line naming the need, what the device allows, and the flags
 * that would fit (computed by more dry runs: the largest micro-batch, activation checkpointing,
 * a smaller preset). Web-standard.
 */
import type { Gpu } from "../gpu/device.ts";
import { Kernels } from "../gpu/kernels.ts";
import {
  largestBuffer,
  type MemoryLimits,
  type Sized,
  sizingGpu,
  totalBytes,
} from "../gpu/sizing.ts";
import { type DiTConfig, type PresetName, PRESETS } from "../model/config.ts";
import { Model, type Precision } from "../model/model.ts";
import type { Dataset } from "../data/dataset.ts";
import { microBatchSizes, type TrainOptions } from "./options.ts";
import { Trainer } from "./trainer.ts";

/** What a run trains: the model, its options and precision. */
export interface RunShape {
  cfg: DiTConfig;
  opts: TrainOptions;
  precision: Precision;
}

/** The buffers of a run by kind, in bytes. */
export interface TrainingMemory {
  /** Every buffer. */
  total: number;
  /** Weights (and their f16 copy), EMA (and its), gradients, optimizer state. */
  state: number;
  /** The step's activations and scratch (and its inputs and metrics). */
  activations: number;
  largestBuffer: Sized;
  largestBinding: Sized;
}

const STATE_LABELS = new Set([
  "params",
  "params f16",
  "ema",
  "ema f16",
  "grads",
  "adam.m",
  "adam.v",
]);

/** A dataset of the model's shape for a dry run (never read). */
function shapeOnly(cfg: DiTConfig): Dataset {
  return {
    length: 1,
    imageSize: cfg.image_size,
    channels: cfg.in_channels,
    numClasses: cfg.num_classes,
    get: () => {
      throw new Error("a dry run reads no data");
    },
  };
}

/** The memory `run` would allocate on `gpu` (a dry run; `limits` as sizingGpu's). */
export function trainingMemory(
  gpu: Gpu,
  run: RunShape,
  limits?: Partial<MemoryLimits>,
): TrainingMemory {
  const dry = sizingGpu(gpu, limits);
  const k = new Kernels(dry);
  const model = new Model(k, run.cfg, { precision: run.precision });
  new Trainer(model, { ...run.opts, precision: run.precision }, shapeOnly(run.cfg));
  const r = dry.record;
  return {
    total: totalBytes(r),
    state: r.buffers.filter((b) => STATE_LABELS.has(b.label)).reduce((a, b) => a + b.bytes, 0),
    activations: k.allocatedBytes,
    largestBuffer: largestBuffer(r),
    largestBinding: r.largestBinding,
  };
}

/** Bytes in MiB, or GiB from 1 GiB. */
export function formatBytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** The limit `m` exceeds, in words ("one … of X (label) where the device allows Y (limit)"). */
export function limitExceeded(m: TrainingMemory, limits: MemoryLimits): string | undefined {
  const b = m.largestBinding, buf = m.largestBuffer;
  if (b.bytes > limits.maxStorageBufferBindingSize) {
    return `one storage binding of ${formatBytes(b.bytes)} (${b.label}) where the device allows ` +
      `${formatBytes(limits.maxStorageBufferBindingSize)} (maxStorageBufferBindingSize)`;
  }
  if (buf.bytes > limits.maxBufferSize) {
    return `one buffer of ${formatBytes(buf.bytes)} (${buf.label}) where the device allows ` +
      `${formatBytes(limits.maxBufferSize)} (maxBufferSize)`;
  }
  return undefined;
}

/** The most micro-batches a step the advice considers. */
export const MAX_PASSES = 16;

/** A change of flags and the memory the run would then need. */
export interface Fit {
  flags: string;
  memory: TrainingMemory;
}

/**
 * Flags that make `run` acceptable to `fits`: the largest micro-batch that fits (up to
 * MAX_PASSES passes a step), activation checkpointing (alone, or with the largest micro-batch that
 * then fits), and the largest smaller preset (with the run's other flags). Each is a dry run.
 */
export function fittingFlags(
  gpu: Gpu,
  run: RunShape,
  fits: (m: TrainingMemory) => boolean,
  limits?: Partial<MemoryLimits>,
): Fit[] {
  const o = run.opts, B = o.batch_size, M = o.micro_batch_size ?? B;
  const size = (opts: Partial<TrainOptions>, cfg = run.cfg) => {
    try {
      return trainingMemory(gpu, { ...run, cfg, opts: { ...o, ...opts } }, limits);
    } catch {
      return undefined; // e.g. a grid past the dispatch limits: not an alternative
    }
  };
  // The largest micro-batch that fits, of at most MAX_PASSES passes a step (each pass records
  // the whole graph's dispatches once more).
  const micro = (extra: Partial<TrainOptions>, flag: string): Fit | undefined => {
    for (const m of microBatchSizes(B).filter((m) => m < M && B / m <= MAX_PASSES)) {
      const memory = size({ ...extra, micro_batch_size: m });
      if (memory && fits(memory)) return { flags: `${flag}--micro-batch-size ${m}`, memory };
    }
  };
  const out: Fit[] = [];
  const found = micro({}, "");
  if (found) out.push(found);
  if (!o.grad_checkpointing) {
    const memory = size({ grad_checkpointing: true });
    if (memory && fits(memory)) out.push({ flags: "--grad-checkpointing", memory });
    else {
      const both = micro({ grad_checkpointing: true }, "--grad-checkpointing ");
      if (both && !found) out.push(both);
    }
  }
  const own = run.cfg.hidden_size * run.cfg.depth;
  const presets = (Object.keys(PRESETS) as PresetName[])
    .filter((p) => PRESETS[p].hidden_size * PRESETS[p].depth < own)
    .filter((p) => run.cfg.image_size % PRESETS[p].patch_size === 0)
    .reverse();
  for (const p of presets) {
    const memory = size({ preset: p }, { ...run.cfg, ...PRESETS[p] });
    if (memory && fits(memory)) {
      out.push({ flags: `--preset ${p}`, memory });
      break;
    }
  }
  return out;
}

/** "fits with: A (x in all), B (y), or C", or what to try when nothing fits. */
export function fitsText(fits: Fit[], verb = "fits with"): string {
  if (!fits.length) {
    return "no smaller micro-batch, checkpointing or preset fits: use a smaller --batch-size or --image-size";
  }
  const each = fits.map((f) => `${f.flags} (${formatBytes(f.memory.total)} in all)`);
  return `${verb}: ${
    each.length > 1 ? each.slice(0, -1).join(", ") + " or " + each.at(-1) : each[0]
  }`;
}

/** The run in a few words, e.g. "DiT-B/2 on 3×64², batch 256, f16". */
export function describeRun(run: RunShape): string {
  const { cfg, opts } = run;
  const M = opts.micro_batch_size;
  return `DiT-${opts.preset}/${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², batch ` +
    `${opts.batch_size}${M && M < opts.batch_size ? ` in micro-batches of ${M}` : ""}` +
    `${opts.grad_checkpointing ? " with activation checkpointing" : ""}, ${run.precision}`;
}

/**
 * Why `run` cannot start on `gpu` (one line: the need, the device's limit, the flags that would
 * fit), or undefined when it is within the limits.
 */
export function memoryLimitProblem(
  gpu: Gpu,
  run: RunShape,
  limits?: Partial<MemoryLimits>,
): string | undefined {
  const dry = sizingGpu(gpu, limits);
  const m = trainingMemory(gpu, run, limits);
  const why = limitExceeded(m, dry.limits);
  if (!why) return undefined;
  const fits = fittingFlags(gpu, run, (x) => !limitExceeded(x, dry.limits), limits);
  return `out of memory: ${describeRun(run)} needs ${formatBytes(m.total)} of buffers, ${why}; ` +
    fitsText(fits);
}

/**
 * The line for an allocation the device refused (`error`: the out-of-memory error's message):
 * the need, and the flags that need less.
 */
export function allocationFailure(gpu: Gpu, run: RunShape, error: string): string {
  const m = trainingMemory(gpu, run);
  const less = fittingFlags(gpu, run, (x) => x.total < 0.75 * m.total);
  return `out of memory: ${describeRun(run)} needs ${formatBytes(m.total)} of buffers ` +
    `(${formatBytes(m.activations)} of activations) and the device could not allocate them ` +
    `(${error.split("\n")[0]}); ${fitsText(less, "try, needing less")}`;
}
