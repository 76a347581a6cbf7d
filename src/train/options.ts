/**
 * Training options as one typed table (src/train/option_table.ts): each field of the seed's
 * FlowMatchingConfig plus this project's, with its type, the seed's default for a real GPU, the
 * CPU profile's default for a software adapter, its range and its help. Parsing, range checks,
 * `--help`, `--config` files and a run's config.json all come from the table;
 * `validateTrainOptions` checks options built in code, `trainOptionsProblem` across fields.
 */

import { defaultsOf, type OptionSpec, validateOptions } from "./option_table.ts";

/** Everything the trainer reads (model-size fields unset: the preset's / the dataset's). */
export interface TrainOptions {
  preset: string;
  image_size?: number;
  in_channels?: number;
  hidden_size?: number;
  depth?: number;
  num_heads?: number;
  patch_size?: number;
  num_classes?: number;
  t_scale: number;
  batch_size: number;
  /** Images per forward/backward pass (gradient accumulation; unset: the whole batch). */
  micro_batch_size?: number;
  /** Recompute each block's activations in the backward (activation checkpointing). */
  grad_checkpointing?: boolean;
  optimizer: "adamw" | "muon";
  lr: number;
  /** Muon's peak learning rate (its matrices; the schedule scales it as it scales lr). */
  muon_lr: number;
  muon_momentum: number;
  train_steps: number;
  warmup: number;
  lr_schedule: "constant" | "cosine";
  min_lr: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
  ema_decay: number;
  label_dropout: number;
  grad_clip: number;
  time_sampling: "uniform" | "logit-normal";
  logit_mean: number;
  logit_std: number;
  seed: number;
  dataset: string;
  data?: string;
  /** A train-vqvae checkpoint: train on its encoder's latents (latent flow matching). */
  vqvae?: string;
  /** Flip training images horizontally at random (unset: the dataset's default, on for cifar10). */
  hflip?: boolean;
  log_every: number;
  sample_every: number;
  ckpt_every: number;
  num_sampling_steps: number;
  cfg_scale: number;
  /** f32, or f16 mixed precision (unset: `defaultPrecision` of the adapter). */
  precision?: "f32" | "f16";
  /** f16: the initial dynamic loss scale. */
  loss_scale: number;
  /** f16: good steps in a row before the loss scale doubles. */
  loss_scale_window: number;
}

const SEED_MAX = 2 ** 32 - 1;

/** The training options: the seed's defaults on a GPU, a CPU profile for software adapters. */
export const TRAIN_OPTIONS: {
  [K in keyof TrainOptions]-?: OptionSpec<NonNullable<TrainOptions[K]>>;
} = {
  preset: {
    type: "string",
    help: "model preset (sizes in README.md)",
    choices: ["tiny", "small", "S", "B", "L"],
    default: "B",
    cpu: "tiny",
  },
  image_size: { type: "int", help: "image size (default: the dataset's)", min: 1 },
  in_channels: {
    type: "int",
    help: "image channels, 1 or 3 (default: the dataset's)",
    check: (c) => c === 1 || c === 3 ? undefined : `must be 1 or 3, got ${c}`,
  },
  hidden_size: { type: "int", help: "transformer width D (overrides the preset)", min: 1 },
  depth: { type: "int", help: "number of DiT blocks (overrides the preset)", min: 1 },
  num_heads: { type: "int", help: "attention heads (overrides the preset)", min: 1 },
  patch_size: { type: "int", help: "patch size p (overrides the preset)", min: 1 },
  num_classes: {
    type: "int",
    help: "number of classes (default: the dataset's; 0 = unconditional)",
    min: 0,
  },
  t_scale: {
    type: "number",
    help: "timestep scale before the frequency embedding (DiT 1000, SiT 1)",
    default: 1000,
    above: 0,
  },
  batch_size: { type: "int", help: "images per step", default: 128, cpu: 16, min: 1 },
  micro_batch_size: {
    type: "int",
    help: "images per forward/backward pass: the step accumulates the gradients of " +
      "batch-size/this passes, then clips and updates once (the same draws as the whole " +
      "batch); --batch-size must be a multiple (default: the batch size)",
    min: 1,
  },
  grad_checkpointing: {
    type: "boolean",
    help: "activation checkpointing: keep only each block's input and recompute the block in " +
      "the backward (less memory, more time; the same gradients bit for bit)",
  },
  optimizer: {
    type: "string",
    help: "adamw, or muon: Muon (Nesterov momentum, Newton–Schulz orthogonalised updates) on " +
      "the blocks' attention qkv/proj and MLP fc1/fc2 weights, AdamW on everything else",
    choices: ["adamw", "muon"],
    default: "adamw",
  },
  lr: { type: "number", help: "peak learning rate (AdamW)", default: 1e-4, cpu: 3e-3, above: 0 },
  muon_lr: {
    type: "number",
    help: "Muon's peak learning rate (warmup and schedule scale it as they scale --lr)",
    default: 0.02,
    above: 0,
  },
  muon_momentum: {
    type: "number",
    help: "Muon's momentum (Nesterov)",
    default: 0.95,
    min: 0,
    below: 1,
  },
  train_steps: {
    type: "int",
    help: "number of training steps (with --resume: the total to reach)",
    default: 100_000,
    cpu: 400,
    min: 1,
    aliases: ["steps"],
  },
  warmup: { type: "int", help: "linear warmup steps", default: 1000, cpu: 50, min: 0 },
  lr_schedule: {
    type: "string",
    help: "constant, or cosine (decay after warmup to --min-lr)",
    choices: ["constant", "cosine"],
    default: "constant",
  },
  min_lr: {
    type: "number",
    help: "final learning rate of the cosine schedule",
    default: 0,
    min: 0,
  },
  weight_decay: {
    type: "number",
    help: "decoupled weight decay (AdamW's, and Muon's with its learning rate)",
    default: 0,
    min: 0,
  },
  beta1: { type: "number", help: "AdamW beta1", default: 0.9, min: 0, below: 1 },
  beta2: { type: "number", help: "AdamW beta2", default: 0.999, min: 0, below: 1 },
  eps: { type: "number", help: "AdamW epsilon", default: 1e-8, above: 0 },
  ema_decay: {
    type: "number",
    help: "EMA decay of the weights used for sampling",
    default: 0.9999,
    cpu: 0.99,
    min: 0,
    max: 1,
  },
  label_dropout: {
    type: "number",
    help: "probability of replacing a label by the null class (CFG)",
    default: 0.1,
    min: 0,
    max: 1,
  },
  grad_clip: {
    type: "number",
    help: "global gradient-norm clip (0 disables)",
    default: 1.0,
    min: 0,
  },
  time_sampling: {
    type: "string",
    help: "uniform, or logit-normal (SD3, on sigma = 1 - t)",
    choices: ["uniform", "logit-normal"],
    default: "uniform",
  },
  logit_mean: { type: "number", help: "logit-normal mean", default: 0 },
  logit_std: { type: "number", help: "logit-normal standard deviation", default: 1, above: 0 },
  seed: {
    type: "int",
    help: "random seed (weights, data order, noise)",
    default: 0,
    min: 0,
    max: SEED_MAX,
  },
  dataset: {
    type: "string",
    help: "fashion-mnist: the --data folder, else Debian's dataset-fashion-mnist " +
      "(/usr/share/datasets/fashion-mnist) if installed, else the embedded subset; " +
      "default: always the embedded subset; cifar10 and folder need --data; emoji: Noto " +
      "emoji by category (fetched once into data/emoji/, or the --data cache folder)",
    choices: ["fashion-mnist", "default", "cifar10", "folder", "emoji"],
    default: "fashion-mnist",
  },
  data: {
    type: "string",
    help: "dataset directory (fashion-mnist: the IDX .gz files; cifar10: the .bin batches; " +
      "folder: one subfolder of images per class)",
  },
  vqvae: {
    type: "string",
    help: "latent flow matching: a train-vqvae checkpoint or run directory; the dataset is " +
      "encoded once (cached in the run directory) and the DiT trains on the scaled latents " +
      "(patch size 1 unless given); the VQ-VAE goes into the flow checkpoints",
  },
  hflip: {
    type: "boolean",
    help: "random horizontal flips of training images (default: on for cifar10, off otherwise)",
  },
  log_every: {
    type: "int",
    help: "steps between progress lines (metrics.jsonl has every step)",
    default: 100,
    cpu: 10,
    min: 1,
  },
  sample_every: {
    type: "int",
    help: "steps between sample grids (0: none, not even at the end)",
    default: 1000,
    cpu: 200,
    min: 0,
  },
  ckpt_every: {
    type: "int",
    help: "steps between checkpoints (0: only the final one)",
    default: 5000,
    cpu: 100,
    min: 0,
  },
  num_sampling_steps: {
    type: "int",
    help: "Euler steps for sample grids",
    default: 50,
    cpu: 20,
    min: 1,
  },
  cfg_scale: {
    type: "number",
    help: "classifier-free guidance scale for sample grids (1 = none)",
    default: 3.0,
    min: 0,
  },
  precision: {
    type: "string",
    help: "f32, or f16: mixed precision (f32 master weights, Adam and EMA; f16 GEMM operands " +
      "and activations; dynamic loss scaling; needs shader-f16) (default: f16 on a GPU with shader-f16, else f32)",
    choices: ["f32", "f16"],
  },
  loss_scale: {
    type: "number",
    help: "f16: initial dynamic loss scale (halved on an overflow, doubled after a window)",
    default: 65536,
    above: 0,
  },
  loss_scale_window: {
    type: "int",
    help: "f16: good steps in a row before the loss scale doubles",
    default: 2000,
    min: 1,
  },
};

/** The seed's defaults (FlowMatchingConfig) for a real GPU. */
export const GPU_DEFAULTS: TrainOptions = defaultsOf(TRAIN_OPTIONS) as unknown as TrainOptions;

/** A profile that finishes in minutes on a software adapter and already shows shapes. */
export const CPU_DEFAULTS: TrainOptions = defaultsOf(
  TRAIN_OPTIONS,
  true,
) as unknown as TrainOptions;

/** `o` checked against TRAIN_OPTIONS (types, ranges, no unknown fields); throws OptionError. */
export function validateTrainOptions(o: TrainOptions): TrainOptions {
  return validateOptions(
    TRAIN_OPTIONS,
    o as unknown as Record<string, unknown>,
  ) as unknown as TrainOptions;
}

/**
 * What is wrong with a combination of options (one line naming the fix), or undefined: the
 * checks across fields that the table's per-option ranges cannot make.
 */
export function trainOptionsProblem(o: TrainOptions): string | undefined {
  const m = o.micro_batch_size;
  if (m !== undefined && (m > o.batch_size || o.batch_size % m !== 0)) {
    return `--micro-batch-size ${m} must divide --batch-size ${o.batch_size} ` +
      `(e.g. ${
        microBatchSizes(o.batch_size).filter((d) => d < o.batch_size).slice(0, 3).join(", ")
      })`;
  }
  return undefined;
}

/** The micro-batch sizes a batch of B splits into, largest first. */
export function microBatchSizes(B: number): number[] {
  return Array.from({ length: B }, (_, i) => B - i).filter((d) => B % d === 0);
}
