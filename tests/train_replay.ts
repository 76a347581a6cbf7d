/**
 * The float64 replay of whole training steps (tests/train_step_test.ts, train_scale_test.ts):
 * three steps of `Trainer` (flow target → DiT forward → MSE → backward → global grad-norm clip →
 * AdamW, or Muon + AdamW → EMA, all on the GPU) against a float64 CPU replay of the same steps:
 * the same batches and flow draws (a Batcher and a FlowPath built with the Trainer's seeds),
 * `ditForwardRef` / `ditBackwardRef` over the whole batch (so a micro-batched step is checked
 * against the undivided batch's gradient), PyTorch's clip_grad_norm_ + AdamW, Muon
 * (tests/reference/muon.ts) on its matrices, and the EMA schedule. Non-zero random initial
 * weights, so every parameter gets a gradient.
 */
import { randomWeights } from "./random_weights.ts";
import type { DiTConfig } from "../src/model/config.ts";
import { paramLayout, paramSpecs } from "../src/model/params.ts";
import { Trainer } from "../src/train/trainer.ts";
import { Model, type Precision } from "../src/model/model.ts";
import { CPU_DEFAULTS, type TrainOptions } from "../src/train/options.ts";
import { ArrayDataset, Batcher } from "../src/data/dataset.ts";
import { FlowPath } from "../src/flow/path.ts";
import { ditBackwardRef, ditForwardRef } from "./reference/dit.ts";
import { assertClose, kernels } from "./harness.ts";
import { muonParamNames } from "../src/train/optimizer.ts";
import * as muonRef from "./reference/muon.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

type F64 = Float64Array;

/** A map of named tensors → the flat layout (padding zero). */
function toFlat(cfg: DiTConfig, map: Map<string, F64>): Float32Array {
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  for (const [name, v] of map) flat.set(Float32Array.from(v), layout.get(name).offset);
  return flat;
}

function cloneMap(map: Map<string, F64>): Map<string, F64> {
  return new Map([...map].map(([k, v]) => [k, Float64Array.from(v)]));
}

interface RefState {
  p: Map<string, F64>;
  m: Map<string, F64>;
  v: Map<string, F64>;
  ema: Map<string, F64>;
}

/** One training step in float64, replaying the Trainer's draws; updates `s`, returns metrics. */
function refStep(
  cfg: DiTConfig,
  o: TrainOptions,
  s: RefState,
  batcher: Batcher,
  path: FlowPath,
  step: number,
): { loss: number; gradNorm: number; lr: number } {
  const per = cfg.in_channels * cfg.image_size ** 2;
  const batch = batcher.next(o.batch_size);
  const draw = path.sample(batch.labels, per);
  const n = batch.images.length;
  const xt = new Float64Array(n), target = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = draw.t[Math.floor(i / per)];
    xt[i] = (1 - t) * draw.noise[i] + t * batch.images[i];
    target[i] = batch.images[i] - draw.noise[i];
  }
  const { out, cache } = ditForwardRef(cfg, s.p, xt, Float64Array.from(draw.t), draw.labels);
  let loss = 0;
  const dOut = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const d = out[i] - target[i];
    loss += d * d;
    dOut[i] = 2 * d / n;
  }
  loss /= n;
  const grads = ditBackwardRef(cfg, s.p, cache, dOut);
  let sq = 0;
  for (const g of grads.values()) for (const x of g) sq += x * x;
  const norm = Math.sqrt(sq);
  const coef = o.grad_clip > 0 ? Math.min(1, o.grad_clip / (norm + 1e-6)) : 1;
  // the schedule written out independently of learningRate()/emaDecayAt()
  const warm = o.warmup > 0 ? Math.min(1, step / o.warmup) : 1;
  const lr = o.lr * warm;
  const decay = Math.min(o.ema_decay, (1 + step) / (10 + step));
  const bc1 = 1 - o.beta1 ** step, bc2 = 1 - o.beta2 ** step;
  const muon = new Set(o.optimizer === "muon" ? muonParamNames(cfg) : []);
  for (const spec of paramSpecs(cfg)) {
    if (!spec.trainable) continue;
    const p = s.p.get(spec.name)!, m = s.m.get(spec.name)!, v = s.v.get(spec.name)!;
    const e = s.ema.get(spec.name)!, g = grads.get(spec.name)!;
    if (muon.has(spec.name)) { // m holds Muon's momentum buffer; v is not used
      const [rows, cols] = spec.shape;
      const h = { lr: o.muon_lr * warm, momentum: o.muon_momentum, weightDecay: o.weight_decay };
      muonRef.muonStep(p, m, g.map((x) => x * coef), rows, cols, h);
      for (let i = 0; i < p.length; i++) e[i] = decay * e[i] + (1 - decay) * p[i];
      continue;
    }
    for (let i = 0; i < p.length; i++) {
      const gi = g[i] * coef;
      p[i] *= 1 - lr * o.weight_decay;
      m[i] = o.beta1 * m[i] + (1 - o.beta1) * gi;
      v[i] = o.beta2 * v[i] + (1 - o.beta2) * gi * gi;
      p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i] / bc2) + o.eps);
      e[i] = decay * e[i] + (1 - decay) * p[i];
    }
  }
  return { loss, gradNorm: norm, lr };
}

export interface Case {
  name: string;
  cfg: DiTConfig;
  opts: Partial<TrainOptions>;
  /** Dataset size (a small one so that the three steps cross an epoch boundary). */
  examples: number;
  /** Start from a restored mid-run state: this many steps done, random Adam moments. */
  startStep: number;
  /** Expect clipping to be active (coefficient < 1) in at least one step. */
  clipped: boolean;
  /** Mixed precision, and the tolerances it needs (default f32: 1e-4 and 2e-2 for updates). */
  precision?: Precision;
  tol?: { metrics: number; state: number; update: number };
}

export async function checkSteps(c: Case): Promise<void> {
  const k = await kernels();
  const cfg = c.cfg;
  const o: TrainOptions = {
    ...CPU_DEFAULTS,
    lr: 1e-3,
    muon_lr: 0.01,
    weight_decay: 0.01,
    warmup: 0,
    ema_decay: 0.999,
    log_every: 2,
    ...c.opts,
  };
  const rng = new Rng(TEST_SEED ^ 0x7a1e);
  const per = cfg.in_channels * cfg.image_size ** 2;
  const pixels = new Uint8Array(c.examples * per);
  for (let i = 0; i < pixels.length; i++) pixels[i] = Math.floor(rng.uniform() * 256);
  const labels = Uint8Array.from(
    { length: c.examples },
    () => Math.floor(rng.uniform() * Math.max(1, cfg.num_classes)),
  );
  const ds = new ArrayDataset(pixels, labels, cfg.in_channels, cfg.image_size, cfg.num_classes);

  const p0 = randomWeights(cfg, rng).map;
  const ema0 = randomWeights(cfg, rng).map;
  const m0 = new Map<string, F64>(), v0 = new Map<string, F64>();
  for (const [name, w] of p0) {
    const trainable = name !== "pos_embed";
    const scale = trainable && c.startStep > 0 ? 1e-3 : 0;
    // a consistent state: |m| ≤ sqrt(v), as Adam's own moments are
    const m = rng.normals(w.length, scale), extra = rng.normals(w.length, scale);
    m0.set(name, m);
    v0.set(name, m.map((x, i) => Math.fround(x * x + extra[i] * extra[i])));
  }

  const precision = c.precision ?? "f32";
  const tol = c.tol ?? { metrics: 1e-4, state: 1e-4, update: 2e-2 };
  const trainer = new Trainer(new Model(k, cfg, { precision }), o, ds);
  // The reference replays the draws with the Trainer's seeds (see its constructor).
  const batcher = new Batcher(ds, { seed: o.seed, flip: o.hflip });
  const path = new FlowPath(o.seed ^ 0x51f15e, {
    numClasses: cfg.num_classes,
    labelDropout: cfg.num_classes > 0 ? o.label_dropout : 0,
    timeSampling: o.time_sampling === "logit-normal"
      ? { kind: "logit-normal", mean: o.logit_mean, std: o.logit_std }
      : { kind: "uniform" },
  });
  trainer.restore(
    { params: toFlat(cfg, p0), ema: toFlat(cfg, ema0), m: toFlat(cfg, m0), v: toFlat(cfg, v0) },
    { step: c.startStep, batcher: batcher.state(), path: path.state() },
  );

  const ref: RefState = { p: cloneMap(p0), m: cloneMap(m0), v: cloneMap(v0), ema: cloneMap(ema0) };
  const refMetrics = [];
  for (let s = 1; s <= 3; s++) {
    await trainer.trainStep();
    refMetrics.push(refStep(cfg, o, ref, batcher, path, c.startStep + s));
  }
  const metrics = await trainer.flushMetrics();
  if (metrics.length !== 3) throw new Error(`expected 3 metrics rows, got ${metrics.length}`);
  for (let s = 0; s < 3; s++) {
    const got = metrics[s], want = refMetrics[s];
    if (got.step !== c.startStep + s + 1) throw new Error(`metrics row ${s} has step ${got.step}`);
    assertClose(`step ${got.step} loss`, [got.loss], [want.loss], tol.metrics);
    assertClose(`step ${got.step} grad norm`, [got.gradNorm], [want.gradNorm], tol.metrics);
    if (precision === "f16" && (got.skipped || got.lossScale !== o.loss_scale)) {
      throw new Error(`step ${got.step}: skipped ${got.skipped} at loss scale ${got.lossScale}`);
    }
    assertClose(`step ${got.step} lr`, [got.lr], [want.lr], 1e-6);
  }
  const coefs = refMetrics.map((r) => Math.min(1, o.grad_clip / (r.gradNorm + 1e-6)));
  if (c.clipped !== coefs.some((x) => o.grad_clip > 0 && x < 1)) {
    throw new Error(
      `test setup: grad norms ${refMetrics.map((r) => r.gradNorm.toFixed(3))} with clip ` +
        `${o.grad_clip} (expected clipping ${c.clipped ? "active" : "inactive"})`,
    );
  }
  if ((await trainer.state()).step !== c.startStep + 3) {
    throw new Error("trainer step not advanced");
  }

  const bufs = await trainer.buffers();
  const layout = trainer.model.layout;
  const worst: Record<string, number> = {};
  for (
    const [what, flat, want] of [
      ["params", bufs.params, ref.p],
      ["ema", bufs.ema, ref.ema],
      ["adam m", bufs.m, ref.m],
      ["adam v", bufs.v, ref.v],
    ] as const
  ) {
    worst[what] = 0;
    for (const spec of paramSpecs(cfg)) {
      const slot = layout.get(spec.name);
      const got = flat.subarray(slot.offset, slot.offset + slot.length);
      const r = want.get(spec.name)!;
      worst[what] = Math.max(
        worst[what],
        assertClose(`${what} ${spec.name}`, got, r, tol.state),
      );
    }
  }
  // The update itself (params after − before), per tensor, so a wrong step is not hidden by
  // the size of the weights. Looser: Adam's first step is g/|g|, so elements whose true gradient
  // is ~0 (e.g. the key bias, which softmax ignores) move by lr·sign(round-off noise).
  let worstDelta = 0;
  for (const spec of paramSpecs(cfg)) {
    if (!spec.trainable) continue;
    const slot = layout.get(spec.name);
    const before = p0.get(spec.name)!;
    const got = bufs.params.subarray(slot.offset, slot.offset + slot.length).map((x, i) =>
      x - before[i]
    );
    const want = ref.p.get(spec.name)!.map((x, i) => x - before[i]);
    worstDelta = Math.max(worstDelta, assertClose(`update ${spec.name}`, got, want, tol.update));
  }
  console.log(
    `  ${c.name} (${precision}): losses ${
      refMetrics.map((r) => r.loss.toFixed(4)).join(", ")
    }; grad norms ` +
      `${refMetrics.map((r) => r.gradNorm.toFixed(3)).join(", ")} (clip ${o.grad_clip}); ` +
      `worst relative error: ${
        Object.entries(worst).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(", ")
      }, update ${worstDelta.toExponential(2)}`,
  );
}
