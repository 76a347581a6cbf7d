/**
 * `deno task train-vqvae` options as one typed table (src/train/options.ts's OptionSpec): type,
 * help, the GPU default and the CPU profile's (software adapters), range, choices and aliases.
 * The task derives its flags, --help, --config checks and both default sets from it.
 */
import { TRAIN_OPTIONS, type TrainOptions } from "../train/options.ts";
import { defaultsOf, type OptionSpec } from "../train/option_table.ts";

// Rows that mean the same as train's.
const { batch_size, lr_schedule, min_lr, weight_decay, beta1, beta2, eps, grad_clip, log_every } =
  TRAIN_OPTIONS;

/** The options the VQ-VAE trainer reads; optimisation and data ones mean what train's do. */
export interface VqvaeTrainOptions extends
  Pick<
    TrainOptions,
    | "dataset"
    | "data"
    | "batch_size"
    | "lr"
    | "train_steps"
    | "warmup"
    | "lr_schedule"
    | "min_lr"
    | "weight_decay"
    | "beta1"
    | "beta2"
    | "eps"
    | "grad_clip"
    | "seed"
    | "log_every"
    | "sample_every"
    | "ckpt_every"
  > {
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
  // data: emoji/folder image size, and --bench's shape
  image_size?: number;
  // augmentation of the training images (held-out ones are never augmented)
  hflip: boolean;
  shift: number;
  in_channels?: number;
  // held-out evaluation
  eval_every: number;
  eval_images: number;
}

/** Every option, in --help order. */
export const VQVAE_OPTIONS: {
  [K in keyof VqvaeTrainOptions]-?: OptionSpec<NonNullable<VqvaeTrainOptions[K]>>;
} = {
  channels: {
    type: "int",
    help: "width at the latent resolution (half at the half resolution); even",
    default: 128,
    cpu: 16,
    min: 2,
    check: (c) => c % 2 === 0 ? undefined : `must be even, got ${c}`,
  },
  res_blocks: {
    type: "int",
    help: "residual blocks in the encoder (and as many in the decoder)",
    default: 2,
    cpu: 1,
    min: 0,
  },
  groups: {
    type: "int",
    help: "GroupNorm groups (must divide --channels)",
    default: 32,
    cpu: 4,
    min: 1,
  },
  act: { type: "string", help: "nonlinearity", default: "silu", choices: ["silu", "relu"] },
  codebook_size: { type: "int", help: "codebook size K", default: 512, min: 2 },
  code_dim: { type: "int", help: "code dimension D (latent channels)", default: 4, min: 1 },
  beta: { type: "number", help: "commitment loss weight", default: 0.25, min: 0 },
  ema_decay: {
    type: "number",
    help: "EMA decay of the codebook statistics",
    default: 0.99,
    min: 0,
    below: 1,
  },
  dead_after: {
    type: "int",
    help: "steps a code may go unused before it restarts at a random encoder output (0: never)",
    default: 100,
    min: 0,
  },
  dataset: {
    type: "string",
    help: "fashion-mnist (--data DIR, else Debian's, else the embedded subset), default, " +
      "emoji, cifar10, folder",
    default: "fashion-mnist",
    choices: ["fashion-mnist", "default", "emoji", "cifar10", "folder"],
  },
  data: { type: "string", help: "dataset folder (emoji: the cache folder, default data/emoji/)" },
  hflip: {
    type: "boolean",
    help: "random horizontal flips of the training images (seeded; resume stays exact)",
    default: false,
  },
  shift: {
    type: "int",
    help: "random translations of the training images by up to this many pixels in x and y, " +
      "edge pixels repeated (seeded; 0: none): against memorising a small dataset",
    default: 0,
    min: 0,
  },
  image_size: {
    type: "int",
    help: "image size for emoji and folder datasets, and --bench (default 32); a multiple of 4",
    min: 4,
    check: (s) => s % 4 === 0 ? undefined : `must be a multiple of 4, got ${s}`,
  },
  in_channels: {
    type: "int",
    help: "image channels for --bench, 1 or 3 (default 3)",
    check: (c) => c === 1 || c === 3 ? undefined : `must be 1 or 3, got ${c}`,
  },
  batch_size,
  lr: { type: "number", help: "peak learning rate (AdamW)", default: 3e-4, cpu: 1e-3, above: 0 },
  train_steps: {
    type: "int",
    help: "number of training steps (with --resume: the total to reach)",
    default: 10000,
    cpu: 300,
    min: 1,
    aliases: ["steps"],
  },
  warmup: { type: "int", help: "linear warmup steps", default: 200, cpu: 20, min: 0 },
  lr_schedule,
  min_lr,
  weight_decay,
  beta1,
  beta2,
  eps,
  grad_clip,
  seed: {
    type: "int",
    help: "random seed (weights, data order, code restarts)",
    default: 0,
    min: 0,
    max: 2 ** 32 - 1,
  },
  log_every,
  sample_every: {
    type: "int",
    help: "steps between reconstruction grids (0: only the final one)",
    default: 1000,
    cpu: 100,
    min: 0,
  },
  ckpt_every: {
    type: "int",
    help: "steps between checkpoints (0: only the final one)",
    default: 2000,
    cpu: 100,
    min: 0,
  },
  eval_every: {
    type: "int",
    help: "steps between held-out PSNR evaluations (0: only the final one)",
    default: 1000,
    cpu: 100,
    min: 0,
  },
  eval_images: {
    type: "int",
    help: "held-out images evaluated (0: all)",
    default: 0,
    cpu: 256,
    min: 0,
  },
};

export const VQVAE_GPU_DEFAULTS = defaultsOf(VQVAE_OPTIONS) as unknown as VqvaeTrainOptions;
export const VQVAE_CPU_DEFAULTS = defaultsOf(
  VQVAE_OPTIONS,
  true,
) as unknown as VqvaeTrainOptions;
