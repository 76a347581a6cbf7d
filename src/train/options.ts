/**
 * Training options: every field of the seed's FlowMatchingConfig plus this project's, with the
 * seed's defaults for a real GPU and a CPU profile for software adapters.
 */

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
  lr: number;
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
  /** Flip training images horizontally at random (default false; cifar10 turns it on). */
  hflip?: boolean;
  out: string;
  name?: string;
  log_every: number;
  sample_every: number;
  ckpt_every: number;
  num_sampling_steps: number;
  cfg_scale: number;
  resume?: string;
}

/** The seed's defaults (FlowMatchingConfig) for a real GPU. */
export const GPU_DEFAULTS: TrainOptions = {
  preset: "B",
  t_scale: 1000,
  batch_size: 128,
  lr: 1e-4,
  train_steps: 100_000,
  warmup: 1000,
  lr_schedule: "constant",
  min_lr: 0,
  weight_decay: 0,
  beta1: 0.9,
  beta2: 0.999,
  eps: 1e-8,
  ema_decay: 0.9999,
  label_dropout: 0.1,
  grad_clip: 1.0,
  time_sampling: "uniform",
  logit_mean: 0,
  logit_std: 1,
  seed: 0,
  dataset: "fashion-mnist",
  out: "runs",
  log_every: 100,
  sample_every: 1000,
  ckpt_every: 5000,
  num_sampling_steps: 50,
  cfg_scale: 3.0,
};

/** A profile that finishes in minutes on a software adapter and already shows shapes. */
export const CPU_DEFAULTS: TrainOptions = {
  ...GPU_DEFAULTS,
  preset: "tiny",
  batch_size: 16,
  lr: 3e-3,
  train_steps: 400,
  warmup: 50,
  ema_decay: 0.99,
  log_every: 10,
  sample_every: 200,
  ckpt_every: 100,
  num_sampling_steps: 20,
};

/** Help text for each option (kebab-case flag → description). */
export const OPTION_HELP: Record<keyof TrainOptions, string> = {
  preset: "model preset: tiny, small, S, B, L",
  image_size: "image size (default: the dataset's)",
  in_channels: "image channels (default: the dataset's)",
  hidden_size: "transformer width D (overrides the preset)",
  depth: "number of DiT blocks (overrides the preset)",
  num_heads: "attention heads (overrides the preset)",
  patch_size: "patch size p (overrides the preset)",
  num_classes: "number of classes (default: the dataset's; 0 = unconditional)",
  t_scale: "timestep scale before the frequency embedding (DiT 1000, SiT 1)",
  batch_size: "images per step",
  lr: "peak learning rate (AdamW)",
  train_steps: "number of training steps",
  warmup: "linear warmup steps",
  lr_schedule: "constant or cosine (decay after warmup to --min-lr)",
  min_lr: "final learning rate of the cosine schedule",
  weight_decay: "AdamW decoupled weight decay",
  beta1: "AdamW beta1",
  beta2: "AdamW beta2",
  eps: "AdamW epsilon",
  ema_decay: "EMA decay of the weights used for sampling",
  label_dropout: "probability of replacing a label by the null class (CFG)",
  grad_clip: "global gradient-norm clip (0 disables)",
  time_sampling: "uniform or logit-normal (SD3, on sigma = 1 - t)",
  logit_mean: "logit-normal mean",
  logit_std: "logit-normal standard deviation",
  seed: "random seed (weights, data order, noise)",
  dataset:
    "fashion-mnist (--data DIR, else Debian's dataset-fashion-mnist, else the embedded subset), default (the embedded subset), cifar10, or folder",
  data:
    "dataset directory (fashion-mnist: the IDX .gz files; cifar10: the .bin batches; folder: class subfolders)",
  hflip: "random horizontal flips of training images (default: on for cifar10, else off)",
  out: "parent directory of run directories",
  name: "run name (default: a timestamp)",
  log_every: "steps between log lines and metrics rows",
  sample_every: "steps between sample grids (0 disables)",
  ckpt_every: "steps between checkpoints (0: only the final one)",
  num_sampling_steps: "Euler steps for sample grids",
  cfg_scale: "classifier-free guidance scale for sample grids",
  resume: "checkpoint path, run directory, or 'auto' (the latest run's last checkpoint)",
};

/** Linear warmup, then constant or cosine decay to min_lr. */
export function learningRate(o: TrainOptions, step: number): number {
  const warm = o.warmup > 0 ? Math.min(1, step / o.warmup) : 1;
  if (o.lr_schedule !== "cosine" || step <= o.warmup) return o.lr * warm;
  const span = Math.max(1, o.train_steps - o.warmup);
  const prog = Math.min(1, (step - o.warmup) / span);
  return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + Math.cos(Math.PI * prog));
}

/** EMA decay with the usual warm-up (as in timm / many DiT trainers): min(d, (1+n)/(10+n)). */
export function emaDecayAt(o: TrainOptions, step: number): number {
  return Math.min(o.ema_decay, (1 + step) / (10 + step));
}
