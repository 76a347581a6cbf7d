/** The learning-rate and EMA-decay schedules of training (per 1-based step). Web-standard. */
import type { TrainOptions } from "./options.ts";

/** The options a learning-rate schedule reads (also the VQ-VAE trainer's). */
export type LrSchedule = Pick<
  TrainOptions,
  "lr" | "warmup" | "lr_schedule" | "min_lr" | "train_steps"
>;

/** Linear warmup, then constant or cosine decay to min_lr. */
export function learningRate(o: LrSchedule, step: number): number {
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
