/**
 * Scaling up (issue 13), whole training steps: micro-batches (gradient accumulation), activation
 * checkpointing and Muon, each replayed over three steps in float64 (tests/train_replay.ts: the
 * reference runs the undivided batch, so an accumulated gradient is checked against the batch's),
 * in f32 and in f16 mixed precision; and the accumulated gradient against the same trainer's
 * undivided step directly (relative difference ≤ 1e-5).
 */
import type { DiTConfig } from "../src/model/config.ts";
import { ODD, TINY_8 } from "./configs.ts";
import { Model, type Precision } from "../src/model/model.ts";
import { paramSpecs } from "../src/model/params.ts";
import { Trainer } from "../src/train/trainer.ts";
import { CPU_DEFAULTS, type TrainOptions } from "../src/train/options.ts";
import { ArrayDataset } from "../src/data/dataset.ts";
import { randomWeights } from "./random_weights.ts";
import { assertClose, kernels, testF16, U16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { checkSteps } from "./train_replay.ts";

const tiny = TINY_8, odd = ODD;
const f16Tol = { metrics: 16 * U16, state: 16 * U16, update: 16 * U16 };

Deno.test("three steps match float64: micro-batches of 2 over a batch of 6 (3 passes)", () =>
  checkSteps({
    name: "tiny, micro-batch 2 of 6",
    cfg: tiny,
    opts: { batch_size: 6, micro_batch_size: 2, grad_clip: 0.05, label_dropout: 0.3, warmup: 2 },
    examples: 11,
    startStep: 0,
    clipped: true,
  }));

Deno.test("three steps match float64: micro-batches + activation checkpointing, resumed", () =>
  checkSteps({
    name: "odd, micro-batch 1 of 3, checkpointing",
    cfg: odd,
    opts: {
      batch_size: 3,
      micro_batch_size: 1,
      grad_checkpointing: true,
      grad_clip: 100,
      hflip: true,
      seed: 3,
    },
    examples: 5,
    startStep: 4,
    clipped: false,
  }));

Deno.test("three steps match float64: Muon + AdamW (clip active, weight decay)", () =>
  checkSteps({
    name: "tiny, muon",
    cfg: tiny,
    opts: { batch_size: 3, optimizer: "muon", grad_clip: 0.05, warmup: 2, weight_decay: 0.1 },
    examples: 7,
    startStep: 0,
    clipped: true,
  }));

Deno.test("three steps match float64: Muon resumed mid-run, micro-batches, checkpointing", () =>
  checkSteps({
    name: "odd, muon, micro-batch 2 of 4, checkpointing",
    cfg: odd,
    opts: {
      batch_size: 4,
      micro_batch_size: 2,
      grad_checkpointing: true,
      optimizer: "muon",
      muon_momentum: 0.8,
      grad_clip: 100,
      seed: 9,
    },
    examples: 6,
    startStep: 5,
    clipped: false,
  }));

// Newton–Schulz maps every singular value of the normalised update towards 1, with a gain of up
// to a⁵ ≈ 485 for the small ones: the f16 activations' round-off in the gradients (~1e-3 of
// them) moves the smallest directions of the orthogonalised update by up to a few percent of its
// largest element (1–2% seen), so the update is checked to 5% here; the momentum buffers (in
// "adam m") and the weights keep the f16 bound, and tests/ops_muon_test.ts checks the kernels
// themselves to ~1e-6. 16×16 images (96 tokens a batch for D = 64) keep the gradients full rank.
await testF16(
  "three steps match float64 in f16 mixed precision: Muon, micro-batches, checkpointing",
  () =>
    checkSteps({
      name: "tiny 16², muon, micro-batch 3 of 6, checkpointing",
      cfg: { ...tiny, image_size: 16 },
      opts: {
        batch_size: 6,
        micro_batch_size: 3,
        grad_checkpointing: true,
        optimizer: "muon",
        grad_clip: 0.05,
        label_dropout: 0.3,
        warmup: 2,
        loss_scale: 1024,
        eps: 1e-2,
      },
      examples: 9,
      startStep: 0,
      clipped: true,
      precision: "f16",
      tol: { ...f16Tol, update: 0.05 },
    }),
);

/** The gradient and loss of one step of a trainer with micro-batches of M (same start). */
async function stepGradient(cfg: DiTConfig, o: TrainOptions, M: number, precision: Precision) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x6ac);
  const per = cfg.in_channels * cfg.image_size ** 2, n = 2 * o.batch_size - 1;
  const pixels = Uint8Array.from({ length: n * per }, () => Math.floor(rng.uniform() * 256));
  const labels = Uint8Array.from({ length: n }, (_, i) => i % cfg.num_classes);
  const data = new ArrayDataset(pixels, labels, cfg.in_channels, cfg.image_size, cfg.num_classes);
  const model = new Model(k, cfg, { weights: randomWeights(cfg, rng).flat, precision });
  const t = new Trainer(model, { ...o, micro_batch_size: M }, data);
  await t.trainStep();
  const [row] = await t.flushMetrics();
  return { grads: await k.read(t.grads.all()), loss: row.loss, layout: model.layout };
}

for (const precision of ["f32", "f16"] as const) {
  const run = precision === "f16" ? testF16 : (name: string, fn: () => Promise<void>) => {
    Deno.test(name, fn);
    return Promise.resolve();
  };
  await run(`accumulated gradient equals the undivided batch's (${precision})`, async () => {
    const o: TrainOptions = { ...CPU_DEFAULTS, batch_size: 8, seed: 5, label_dropout: 0.2 };
    const full = await stepGradient(odd, o, 8, precision);
    // f16: the passes' GEMMs see other rows, so their f16 roundings differ a little.
    const tol = precision === "f16" ? 4 * U16 : 1e-5;
    for (const M of [4, 1]) {
      const acc = await stepGradient(odd, o, M, precision);
      let d2 = 0, g2 = 0;
      for (const s of paramSpecs(odd).filter((s) => s.trainable)) {
        const { offset, length } = full.layout.get(s.name);
        const a = full.grads.subarray(offset, offset + length);
        const b = acc.grads.subarray(offset, offset + length);
        assertClose(`${precision} M=${M} grad ${s.name}`, b, a, 10 * tol);
        for (let i = 0; i < length; i++) {
          d2 += (a[i] - b[i]) ** 2;
          g2 += a[i] ** 2;
        }
      }
      const rel = Math.sqrt(d2 / g2);
      if (!(rel <= tol)) {
        throw new Error(`${precision} M=${M}: gradient relative difference ${rel}`);
      }
      assertClose(`${precision} M=${M} loss`, [acc.loss], [full.loss], tol);
      console.log(
        `  ${precision} micro-batch ${M} of 8: gradient relative difference ${
          rel.toExponential(2)
        }, ` +
          `loss ${acc.loss} vs ${full.loss}`,
      );
    }
  });
}
