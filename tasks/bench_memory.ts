/**
 * `deno task bench --memory`: what a training run of the configuration would allocate, by a dry
 * run of the trainer (src/train/memory.ts: nothing allocated, nothing trained, so also for
 * configurations the device refuses), with and without activation checkpointing, checked against
 * this device's limits (the line `train` would stop with, when past them).
 */
import {
  type DiTConfig,
  formatBytes,
  type Gpu,
  memoryLimitProblem,
  type Precision,
  type TrainingMemory,
  trainingMemory,
  type TrainOptions,
} from "../mod.ts";

function describe(m: TrainingMemory): string {
  return `${formatBytes(m.total)} of buffers: weights, EMA, gradients and optimizer state ` +
    `${formatBytes(m.state)}, activations and scratch ${formatBytes(m.activations)}; largest ` +
    `buffer ${formatBytes(m.largestBuffer.bytes)} (${m.largestBuffer.label}), largest storage ` +
    `binding ${formatBytes(m.largestBinding.bytes)} (${m.largestBinding.label})`;
}

const json = (m: TrainingMemory) => ({
  total_bytes: m.total,
  state_bytes: m.state,
  activation_bytes: m.activations,
  largest_buffer: m.largestBuffer,
  largest_binding: m.largestBinding,
});

export function benchMemory(
  gpu: Gpu,
  cfg: DiTConfig,
  opts: TrainOptions,
  precision: Precision,
): Record<string, unknown> {
  const run = { cfg, opts, precision };
  const m = trainingMemory(gpu, run);
  console.log(`training memory (${precision}; a dry run, nothing allocated): ${describe(m)}`);
  const other = { ...opts, grad_checkpointing: !opts.grad_checkpointing };
  const o = trainingMemory(gpu, { ...run, opts: other });
  const [plain, ckpt] = opts.grad_checkpointing ? [o, m] : [m, o];
  console.log(
    `  ${opts.grad_checkpointing ? "without" : "with"} --grad-checkpointing: ` +
      `${formatBytes(o.total)} of buffers, activations ${formatBytes(o.activations)} ` +
      `(checkpointing cuts activations ${(plain.activations / ckpt.activations).toFixed(2)}×)`,
  );
  const l = gpu.device.limits;
  const problem = memoryLimitProblem(gpu, run);
  console.log(
    `  device limits: buffers ${formatBytes(l.maxBufferSize)} (maxBufferSize), storage ` +
      `bindings ${formatBytes(l.maxStorageBufferBindingSize)} (maxStorageBufferBindingSize): ` +
      (problem ? `train would stop: ${problem}` : "within them (WebGPU reports no memory size)"),
  );
  return {
    precision,
    memory: json(m),
    [opts.grad_checkpointing ? "without_checkpointing" : "with_checkpointing"]: json(o),
    limits: {
      max_buffer_size: l.maxBufferSize,
      max_storage_buffer_binding_size: l.maxStorageBufferBindingSize,
    },
    refused: problem ?? null,
  };
}
