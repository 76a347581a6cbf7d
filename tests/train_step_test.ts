/**
 * Three whole training steps of `Trainer` against their float64 replay (tests/train_replay.ts):
 * AdamW, f32 and f16 mixed precision.
 */
import { ODD, TINY_8 } from "./configs.ts";
import { testF16, U16 } from "./harness.ts";
import { checkSteps } from "./train_replay.ts";

Deno.test("three training steps match float64: tiny preset (8×8, C=1, K=3, batch 3)", () =>
  checkSteps({
    name: "tiny",
    cfg: TINY_8,
    opts: { batch_size: 3, grad_clip: 0.05, label_dropout: 0.3, warmup: 2 },
    examples: 7,
    startStep: 0,
    clipped: true,
  }));

Deno.test("three training steps match float64: odd config, resumed mid-run (flip, logit-normal)", () =>
  checkSteps({
    name: "odd",
    cfg: ODD,
    opts: {
      batch_size: 2,
      grad_clip: 100,
      hflip: true,
      time_sampling: "logit-normal",
      logit_mean: 0.2,
      logit_std: 1.1,
      seed: 7,
      ema_decay: 0.5,
    },
    examples: 5,
    startStep: 5,
    clipped: false,
  }));

await testF16(
  "three training steps match float64 in f16 mixed precision: tiny preset",
  () =>
    checkSteps({
      name: "tiny",
      cfg: TINY_8,
      opts: {
        batch_size: 3,
        grad_clip: 0.05,
        label_dropout: 0.3,
        warmup: 2,
        loss_scale: 1024,
        eps: 1e-2,
      },
      examples: 7,
      startStep: 0,
      clipped: true,
      precision: "f16",
      tol: { metrics: 16 * U16, state: 16 * U16, update: 16 * U16 },
    }),
);
