/**
 * The trainer in f16 mixed precision: dynamic loss scaling (an overflow skips the update and
 * halves the scale, logged in the metrics; a window of good steps doubles it) and a bit-identical
 * resume, the loss scaler's state included.
 */
import { resolveConfig } from "../src/model/config.ts";
import { Model } from "../src/model/model.ts";
import { type StepMetrics, Trainer, type TrainerState } from "../src/train/trainer.ts";
import { CPU_DEFAULTS, type TrainOptions } from "../src/train/options.ts";
import { ArrayDataset } from "../src/data/dataset.ts";
import { assert } from "./task_run.ts";
import { kernels, testF16 } from "./harness.ts";
import { randomWeights } from "./random_weights.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

const cfg = resolveConfig({ preset: "tiny", image_size: 8, in_channels: 1, num_classes: 3 });

function dataset(): ArrayDataset {
  const rng = new Rng(TEST_SEED ^ 0xa4b);
  const n = 9, per = 64;
  const pixels = Uint8Array.from({ length: n * per }, () => Math.floor(rng.uniform() * 256));
  const labels = Uint8Array.from({ length: n }, () => Math.floor(rng.uniform() * 3));
  return new ArrayDataset(pixels, labels, 1, 8, 3);
}

function options(o: Partial<TrainOptions>): TrainOptions {
  return { ...CPU_DEFAULTS, batch_size: 3, lr: 1e-3, warmup: 2, log_every: 4, ...o };
}

/** Random non-zero weights (DiT's zero-init gates would let no gradient into the blocks). */
async function trainer(o: TrainOptions): Promise<Trainer> {
  const model = new Model(await kernels(), cfg, {
    weights: randomWeights(cfg, new Rng(TEST_SEED ^ 0x77)).flat,
    precision: "f16",
  });
  return new Trainer(model, o, dataset());
}

async function run(t: Trainer, steps: number): Promise<StepMetrics[]> {
  for (let i = 0; i < steps; i++) await t.trainStep();
  return await t.flushMetrics();
}

await testF16("f16 loss scaling: an overflow skips and halves, good steps double", async () => {
  // S = 2^36 overflows f16 in the backward (the loss gradient alone is ~S·1e-2); window 2.
  const o = options({ loss_scale: 2 ** 36, loss_scale_window: 2 });
  const t = await trainer(o);
  const before = await t.buffers();
  const first = await run(t, 1);
  assert(first[0].skipped === true && first[0].lossScale === 2 ** 36, "step 1 not skipped");
  assert(!Number.isFinite(first[0].gradNorm), `step 1 grad norm ${first[0].gradNorm}`);
  assert(Number.isFinite(first[0].loss), "the forward is f32-safe: finite loss");
  const after = await t.buffers();
  for (const key of ["params", "ema", "m", "v"] as const) {
    assert(after[key].every((v, i) => Object.is(v, before[key][i])), `a skip changed ${key}`);
  }
  const rows = [...first, ...await run(t, 39)];
  let S = 2 ** 36, good = 0, skips = 0, doublings = 0;
  for (const r of rows) {
    assert(r.lossScale === S, `step ${r.step}: scale ${r.lossScale}, want ${S}`);
    if (r.skipped) {
      skips++;
      S /= 2;
      good = 0;
    } else if (++good === o.loss_scale_window) {
      doublings++;
      S *= 2;
      good = 0;
    }
    assert(r.skipped || Number.isFinite(r.gradNorm), `step ${r.step}: applied, norm ${r.gradNorm}`);
  }
  assert(skips >= 10 && doublings >= 2, `skips ${skips}, doublings ${doublings}`);
  const st = await t.state();
  assert(
    st.lossScale?.scale === S && st.lossScale.skipped === skips && st.lossScale.good === good,
    `state ${JSON.stringify(st.lossScale)}, want scale ${S}, skipped ${skips}, good ${good}`,
  );
  const end = (await t.buffers()).params;
  const applied = after.params.some((v, i) => !Object.is(v, end[i]));
  assert(applied, "no update was ever applied");
  console.log(
    `  40 steps: ${skips} skipped, ${doublings} doublings, final scale 2^${Math.log2(S)}`,
  );
});

await testF16("f16 resume is bit-identical (loss scale state included)", async () => {
  // A scale that overflows at first and a window of 2: skips and doublings around the resume.
  const o = options({ loss_scale: 2 ** 24, loss_scale_window: 2, seed: 3 });
  const a = await trainer(o);
  const head = await run(a, 5);
  const bufs = await a.buffers();
  const state: TrainerState = JSON.parse(JSON.stringify(await a.state()));
  const tailA = await run(a, 6);
  const b = await trainer(o);
  b.restore(bufs, state);
  const tailB = await run(b, 6);
  assert(tailB[0].step === 6 && tailB.length === 6, `resumed rows ${tailB.map((r) => r.step)}`);
  for (let i = 0; i < 6; i++) {
    const x = tailA[i], y = tailB[i];
    assert(
      Object.is(x.loss, y.loss) && Object.is(x.gradNorm, y.gradNorm) &&
        x.lossScale === y.lossScale && x.skipped === y.skipped,
      `step ${x.step}: ${JSON.stringify(x)} vs resumed ${JSON.stringify(y)}`,
    );
  }
  const [fa, fb] = [await a.buffers(), await b.buffers()];
  for (const key of ["params", "ema", "m", "v"] as const) {
    assert(fa[key].every((v, i) => Object.is(v, fb[key][i])), `final ${key} differ`);
  }
  assert(JSON.stringify(await a.state()) === JSON.stringify(await b.state()), "states differ");
  const skipped = [...head, ...tailA].filter((r) => r.skipped).length;
  console.log(
    `  steps 1-11, resumed after 5: identical (${skipped} skipped; scales ${
      [...head, ...tailA].map((r) => Math.log2(r.lossScale!)).join(" ")
    } as powers of 2)`,
  );
});
