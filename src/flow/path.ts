/**
 * The training side of flow matching (rectified flow): the path x_t = α(t)·x0 + β(t)·x1 from noise
 * x0 (t=0) to data x1 (t=1) with α = 1−t, β = t, and the regression target, its velocity
 * dx_t/dt = x1 − x0. `pathCoefficients` and `TARGET_COEFFICIENTS` name them; `interpolate` is
 * their CPU form and the GPU kernel (`flowTargetForward`, shaders/loss.wgsl) computes exactly
 * that. Per step, on the CPU with a seeded PRNG whose state is serialisable: times t (uniform, or
 * SD3's logit-normal on σ = 1−t), noise normals, and label dropout to the null class K for
 * classifier-free guidance. Uploaded once per step.
 */
import { type RngState, SeededRng } from "../rng.ts";

/** t ~ U(0,1), or SD3's logit-normal: σ = 1−t = sigmoid(u), u ~ N(mean, std²). */
export type TimeSampling =
  | { kind: "uniform" }
  | { kind: "logit-normal"; mean?: number; std?: number };

export interface PathOptions {
  timeSampling?: TimeSampling;
  /** Probability of replacing a label with the null label (default 0.1). */
  labelDropout?: number;
  /** K: the null label is K (the label table has K+1 rows). 0 for unconditional data. */
  numClasses: number;
}

/** What training uploads for one step. */
export interface PathBatch {
  /** [B] times in (0, 1). */
  t: Float32Array;
  /** [B·D] standard normals x0. */
  noise: Float32Array;
  /** [B] labels after dropout (K = null). */
  labels: Int32Array;
}

export function sigmoid(u: number): number {
  return u >= 0 ? 1 / (1 + Math.exp(-u)) : Math.exp(u) / (1 + Math.exp(u));
}

/** Fill `out` with training times under `sampling`. */
export function sampleTimes(
  rng: SeededRng,
  out: Float32Array,
  sampling: TimeSampling = { kind: "uniform" },
): Float32Array {
  if (sampling.kind === "uniform") {
    for (let i = 0; i < out.length; i++) out[i] = rng.uniform();
  } else if (sampling.kind === "logit-normal") {
    const m = sampling.mean ?? 0, s = sampling.std ?? 1;
    const u = rng.normals(new Float64Array(out.length));
    for (let i = 0; i < out.length; i++) out[i] = 1 - sigmoid(m + s * u[i]);
  } else {
    throw new Error(`unknown time sampling ${(sampling as { kind: string }).kind}`);
  }
  return out;
}

/** Replace each label with `nullLabel` with probability p (in place). */
export function dropLabels(
  rng: SeededRng,
  labels: Int32Array,
  p: number,
  nullLabel: number,
): Int32Array {
  for (let i = 0; i < labels.length; i++) if (rng.uniform() < p) labels[i] = nullLabel;
  return labels;
}

/** The path's coefficients at time t: x_t = noise·x0 + data·x1 (α = 1 − t, β = t). */
export function pathCoefficients(t: number): { noise: number; data: number } {
  return { noise: 1 - t, data: t };
}

/** The target's coefficients: v = dx_t/dt = α'·x0 + β'·x1 = x1 − x0 (independent of t). */
export const TARGET_COEFFICIENTS: Readonly<{ noise: number; data: number }> = {
  noise: -1,
  data: 1,
};

/** The interpolant and target per example: xt = (1−t)·x0 + t·x1, v = x1 − x0 (t [B]). */
export function interpolate(
  x0: Float32Array,
  x1: Float32Array,
  t: Float32Array,
): { xt: Float32Array; v: Float32Array } {
  const d = x0.length / t.length;
  const xt = new Float32Array(x0.length), v = new Float32Array(x0.length);
  const tc = TARGET_COEFFICIENTS;
  for (let b = 0; b < t.length; b++) {
    const c = pathCoefficients(t[b]);
    for (let i = b * d; i < (b + 1) * d; i++) {
      xt[i] = c.noise * x0[i] + c.data * x1[i];
      v[i] = tc.noise * x0[i] + tc.data * x1[i];
    }
  }
  return { xt, v };
}

/** Serialisable state of a `FlowPath` (for checkpoints). */
export interface PathState {
  rng: RngState;
}

/** Per-step random draws for flow-matching training, reproducible across a resume. */
export class FlowPath {
  readonly rng: SeededRng;
  readonly timeSampling: TimeSampling;
  readonly labelDropout: number;
  readonly numClasses: number;

  constructor(seed: number | RngState, opts: PathOptions) {
    this.rng = new SeededRng(seed);
    this.timeSampling = opts.timeSampling ?? { kind: "uniform" };
    this.labelDropout = opts.labelDropout ?? 0.1;
    this.numClasses = opts.numClasses;
    if (!(this.labelDropout >= 0 && this.labelDropout <= 1)) {
      throw new Error(`label dropout ${this.labelDropout} is not a probability`);
    }
  }

  state(): PathState {
    return { rng: this.rng.state() };
  }

  restore(s: PathState): void {
    this.rng.setState(s.rng);
  }

  /** Times, noise (`dim` values per example) and dropped-out labels for one batch. */
  sample(labels: Int32Array, dim: number): PathBatch {
    const b = labels.length;
    const t = sampleTimes(this.rng, new Float32Array(b), this.timeSampling);
    const noise = this.rng.normals(new Float32Array(b * dim)) as Float32Array;
    const out = dropLabels(this.rng, Int32Array.from(labels), this.labelDropout, this.numClasses);
    return { t, noise, labels: out };
  }
}
