/**
 * `deno task train-vqvae` options in one table: kind, help, the GPU default and the CPU-profile
 * default (software adapters), choices and aliases. The task derives its flags, --help and both
 * default sets from it.
 */

export interface VqvaeTrainOptions {
  // model (the checkpoint's config)
  channels: number;
  res_blocks: number;
  groups: number;
  act: "silu" | "relu";
  codebook_size: number;
  code_dim: number;
  beta: number;
  ema_decay: number;
  dead_after: number;
  // data
  dataset: string;
  data?: string;
  image_size?: number;
  in_channels?: number;
  // optimisation
  batch_size: number;
  lr: number;
  train_steps: number;
  warmup: number;
  lr_schedule: "constant" | "cosine";
  min_lr: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
  grad_clip: number;
  seed: number;
  // outputs
  out: string;
  name?: string;
  log_every: number;
  sample_every: number;
  ckpt_every: number;
  eval_every: number;
  eval_images: number;
  resume?: string;
  bench: boolean;
}

export interface OptionRow {
  kind: "int" | "number" | "string" | "boolean";
  help: string;
  /** Default on a GPU (absent: none). */
  gpu?: string | number | boolean;
  /** Default of the CPU profile (absent: the GPU default). */
  cpu?: string | number | boolean;
  choices?: string[];
  aliases?: string[];
}

/** Every option, in --help order. */
export const VQVAE_OPTIONS: Record<keyof VqvaeTrainOptions, OptionRow> = {
  channels: {
    kind: "int",
    help: "width at the latent resolution (half at the half resolution)",
    gpu: 128,
    cpu: 16,
  },
  res_blocks: {
    kind: "int",
    help: "residual blocks in the encoder (and as many in the decoder)",
    gpu: 2,
    cpu: 1,
  },
  groups: { kind: "int", help: "GroupNorm groups (must divide --channels)", gpu: 32, cpu: 4 },
  act: { kind: "string", help: "nonlinearity", gpu: "silu", choices: ["silu", "relu"] },
  codebook_size: { kind: "int", help: "codebook size K", gpu: 512 },
  code_dim: { kind: "int", help: "code dimension D (latent channels)", gpu: 4 },
  beta: { kind: "number", help: "commitment loss weight", gpu: 0.25 },
  ema_decay: { kind: "number", help: "EMA decay of the codebook statistics", gpu: 0.99 },
  dead_after: {
    kind: "int",
    help: "steps a code may go unused before it restarts at a random encoder output (0: never)",
    gpu: 100,
  },
  dataset: {
    kind: "string",
    help:
      "fashion-mnist (--data DIR, else Debian's, else the embedded subset), default, emoji, cifar10, folder",
    gpu: "fashion-mnist",
    choices: ["fashion-mnist", "default", "emoji", "cifar10", "folder"],
  },
  data: { kind: "string", help: "dataset folder (emoji: the cache folder, default data/emoji/)" },
  image_size: {
    kind: "int",
    help: "image size for emoji and folder datasets, and --bench (default 32)",
  },
  in_channels: { kind: "int", help: "image channels for --bench (default 3)" },
  batch_size: { kind: "int", help: "images per step", gpu: 128, cpu: 16 },
  lr: { kind: "number", help: "peak learning rate (AdamW)", gpu: 3e-4, cpu: 1e-3 },
  train_steps: {
    kind: "int",
    help: "number of training steps",
    gpu: 10000,
    cpu: 300,
    aliases: ["steps"],
  },
  warmup: { kind: "int", help: "linear warmup steps", gpu: 200, cpu: 20 },
  lr_schedule: {
    kind: "string",
    help: "constant, or cosine decay to --min-lr",
    gpu: "constant",
    choices: ["constant", "cosine"],
  },
  min_lr: { kind: "number", help: "final learning rate of the cosine schedule", gpu: 0 },
  weight_decay: { kind: "number", help: "AdamW decoupled weight decay", gpu: 0 },
  beta1: { kind: "number", help: "AdamW beta1", gpu: 0.9 },
  beta2: { kind: "number", help: "AdamW beta2", gpu: 0.999 },
  eps: { kind: "number", help: "AdamW epsilon", gpu: 1e-8 },
  grad_clip: { kind: "number", help: "global gradient-norm clip (0 disables)", gpu: 1.0 },
  seed: { kind: "int", help: "random seed (weights, data order, code restarts)", gpu: 0 },
  out: { kind: "string", help: "parent directory of run directories", gpu: "runs" },
  name: { kind: "string", help: "run name (default: vqvae- and a timestamp)" },
  log_every: { kind: "int", help: "steps between log lines", gpu: 100, cpu: 10 },
  sample_every: {
    kind: "int",
    help: "steps between reconstruction grids (0: only the final one)",
    gpu: 1000,
    cpu: 100,
  },
  ckpt_every: {
    kind: "int",
    help: "steps between checkpoints (0: only the final one)",
    gpu: 2000,
    cpu: 100,
  },
  eval_every: {
    kind: "int",
    help: "steps between held-out PSNR evaluations (0: only the final one)",
    gpu: 1000,
    cpu: 100,
  },
  eval_images: { kind: "int", help: "held-out images evaluated (0: all)", gpu: 0, cpu: 256 },
  resume: {
    kind: "string",
    help: "checkpoint path, run directory, or 'auto' (the latest VQ-VAE run)",
  },
  bench: {
    kind: "boolean",
    help: "time training steps on random images (no dataset, no files) and print JSON",
  },
};

function defaults(which: "gpu" | "cpu"): VqvaeTrainOptions {
  const o: Record<string, unknown> = {};
  for (const [name, row] of Object.entries(VQVAE_OPTIONS)) {
    const v = which === "cpu" ? row.cpu ?? row.gpu : row.gpu;
    if (v !== undefined) o[name] = v;
  }
  o.bench = false;
  return o as unknown as VqvaeTrainOptions;
}

export const VQVAE_GPU_DEFAULTS = defaults("gpu");
export const VQVAE_CPU_DEFAULTS = defaults("cpu");

/** Linear warmup, then constant or cosine decay to min_lr. */
export function vqvaeLearningRate(o: VqvaeTrainOptions, step: number): number {
  const warm = o.warmup > 0 ? Math.min(1, step / o.warmup) : 1;
  if (o.lr_schedule !== "cosine" || step <= o.warmup) return o.lr * warm;
  const prog = Math.min(1, (step - o.warmup) / Math.max(1, o.train_steps - o.warmup));
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + Math.cos(Math.PI * prog));
}
