/** Learning-rate and EMA schedules against their closed forms. */
import assert from "node:assert/strict";
import { emaDecayAt, GPU_DEFAULTS, learningRate, type TrainOptions } from "../src/train/options.ts";

const close = (a: number, b: number) =>
  assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${a} != ${b}`);

Deno.test("linear warmup then constant", () => {
  const o: TrainOptions = { ...GPU_DEFAULTS, lr: 3e-4, warmup: 100, train_steps: 1000 };
  close(learningRate(o, 1), 3e-6);
  close(learningRate(o, 50), 1.5e-4);
  close(learningRate(o, 100), 3e-4);
  close(learningRate(o, 999), 3e-4);
  close(learningRate({ ...o, warmup: 0 }, 1), 3e-4);
});

Deno.test("cosine decay after warmup reaches min_lr at the last step", () => {
  const o: TrainOptions = {
    ...GPU_DEFAULTS,
    lr: 1e-3,
    min_lr: 1e-5,
    warmup: 10,
    train_steps: 110,
    lr_schedule: "cosine",
  };
  close(learningRate(o, 5), 5e-4);
  close(learningRate(o, 10), 1e-3);
  for (const s of [10, 23, 60, 97, 110]) {
    const p = (s - 10) / 100;
    close(learningRate(o, s), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + Math.cos(Math.PI * p)));
  }
  close(learningRate(o, 110), 1e-5);
  close(learningRate(o, 60), 1e-5 + 0.5 * (1e-3 - 1e-5));
});

Deno.test("EMA decay warm-up min(d, (1+n)/(10+n))", () => {
  const o: TrainOptions = { ...GPU_DEFAULTS, ema_decay: 0.9999 };
  close(emaDecayAt(o, 0), 0.1);
  close(emaDecayAt(o, 1), 2 / 11);
  close(emaDecayAt(o, 90), 91 / 100);
  close(emaDecayAt(o, 1e6), 0.9999);
});
