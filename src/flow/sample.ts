/**
 * Sampling a flow: integrate dx/dt = v(x, t) from t = 0 (noise) to t = 1 (data) with fixed-step
 * Euler, Heun, midpoint or RK4 over a time grid, or adaptive Dormand–Prince 5(4). Grids: uniform,
 * or SD3's shift σ' = s·σ/(1+(s−1)·σ) on σ = 1−t (guidance is in guidance.ts). Everything goes
 * through `VecOps`, so it runs on CPU arrays and GPU tensors alike and knows nothing of the
 * network.
 */
import type { VecOps } from "./vecops.ts";

/** The velocity field: write v(x, t) into `out` (which never aliases x). */
export type VelocityFn<V> = (x: V, t: number, out: V) => void | Promise<void>;

/** Called after each accepted step with the state x at time t (steps counted from 1). */
export type StepFn<V> = (x: V, t: number, step: number) => void | Promise<void>;

export type FixedMethod = "euler" | "heun" | "midpoint" | "rk4";
export type Method = FixedMethod | "dopri5";

/** Velocity evaluations per step of each fixed-step method. */
export const NFE_PER_STEP: Record<FixedMethod, number> = { euler: 1, heun: 2, midpoint: 2, rk4: 4 };

export interface SolveStats {
  /** Number of calls of the velocity function. */
  nfe: number;
  /** Accepted steps. */
  steps: number;
  /** Rejected steps (adaptive only). */
  rejected: number;
}

/** SD3's timestep shift on σ = 1 − t: σ' = s·σ/(1+(s−1)·σ). s > 1 spends more steps near noise. */
export function shiftSigma(sigma: number, shift: number): number {
  return shift * sigma / (1 + (shift - 1) * sigma);
}

/** t_i = i/steps, i = 0..steps. */
export function uniformGrid(steps: number): number[] {
  if (!Number.isInteger(steps) || steps < 1) throw new Error(`steps must be ≥ 1, not ${steps}`);
  return Array.from({ length: steps + 1 }, (_, i) => i / steps);
}

/** The uniform grid with σ = 1 − t shifted: t_i = 1 − shiftSigma(1 − i/steps, shift). */
export function timeGrid(steps: number, shift = 1): number[] {
  if (!(shift > 0)) throw new Error(`shift must be > 0, not ${shift}`);
  return uniformGrid(steps).map((t) => shift === 1 ? t : 1 - shiftSigma(1 - t, shift));
}

/** Integrate x in place along `grid` (increasing times) with a fixed-step method. */
export async function solveFixed<V>(
  ops: VecOps<V>,
  f: VelocityFn<V>,
  x: V,
  grid: number[],
  method: FixedMethod,
  onStep?: StepFn<V>,
): Promise<SolveStats> {
  if (grid.length < 2) throw new Error("time grid needs at least 2 points");
  if (!(method in NFE_PER_STEP)) throw new Error(`unknown method ${method}`);
  const k1 = ops.alloc(x);
  const k2 = method === "euler" ? k1 : ops.alloc(x);
  const tmp = method === "euler" ? k1 : ops.alloc(x);
  const k3 = method === "rk4" ? ops.alloc(x) : k1;
  const k4 = method === "rk4" ? ops.alloc(x) : k1;
  let nfe = 0;
  try {
    for (let i = 0; i + 1 < grid.length; i++) {
      const t = grid[i], h = grid[i + 1] - grid[i];
      await f(x, t, k1);
      nfe++;
      switch (method) {
        case "euler":
          ops.axpy(x, h, k1);
          break;
        case "midpoint":
          ops.lincomb(tmp, [1, h / 2], [x, k1]);
          await f(tmp, t + h / 2, k2);
          nfe++;
          ops.axpy(x, h, k2);
          break;
        case "heun":
          ops.lincomb(tmp, [1, h], [x, k1]);
          await f(tmp, t + h, k2);
          nfe++;
          ops.lincomb(x, [1, h / 2, h / 2], [x, k1, k2]);
          break;
        case "rk4":
          ops.lincomb(tmp, [1, h / 2], [x, k1]);
          await f(tmp, t + h / 2, k2);
          ops.lincomb(tmp, [1, h / 2], [x, k2]);
          await f(tmp, t + h / 2, k3);
          ops.lincomb(tmp, [1, h], [x, k3]);
          await f(tmp, t + h, k4);
          nfe += 3;
          ops.lincomb(x, [1, h / 6, h / 3, h / 3, h / 6], [x, k1, k2, k3, k4]);
          break;
      }
      if (onStep) await onStep(x, grid[i + 1], i + 1);
    }
  } finally {
    for (const v of new Set([k1, k2, tmp, k3, k4])) ops.free(v);
  }
  return { nfe, steps: grid.length - 1, rejected: 0 };
}

export interface AdaptiveOptions<V = unknown> {
  atol?: number;
  rtol?: number;
  t0?: number;
  t1?: number;
  /** First step; default: Hairer's estimate (one extra evaluation). */
  h0?: number;
  /** Give up after this many steps (accepted + rejected); default 10000. */
  maxSteps?: number;
  onStep?: StepFn<V>;
}

// Dormand–Prince 5(4) tableau (FSAL: the 7th stage is the next step's first).
const DP_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1];
const DP_A = [
  [],
  [1 / 5],
  [3 / 40, 9 / 40],
  [44 / 45, -56 / 15, 32 / 9],
  [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
  [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
  [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
];
/** b − b̂ (5th order minus embedded 4th order). */
const DP_E = [
  71 / 57600,
  0,
  -71 / 16695,
  71 / 1920,
  -17253 / 339200,
  22 / 525,
  -1 / 40,
];

/**
 * Integrate x in place from t0 (default 0) to t1 (default 1) with adaptive Dormand–Prince 5(4):
 * a step is accepted when sqrt(mean((e/(atol + rtol·max(|x|,|x'|)))²)) ≤ 1. One read-back per
 * step (the error norm).
 */
export async function solveAdaptive<V>(
  ops: VecOps<V>,
  f: VelocityFn<V>,
  x: V,
  opts: AdaptiveOptions<V> = {},
): Promise<SolveStats> {
  const atol = opts.atol ?? 1e-4, rtol = opts.rtol ?? 1e-4;
  const t0 = opts.t0 ?? 0, t1 = opts.t1 ?? 1, maxSteps = opts.maxSteps ?? 10000;
  if (!(atol > 0 || rtol > 0)) throw new Error("adaptive solver: atol or rtol must be > 0");
  const span = t1 - t0;
  if (!(span > 0)) throw new Error(`adaptive solver: t1 (${t1}) must exceed t0 (${t0})`);
  const k = Array.from({ length: 7 }, () => ops.alloc(x));
  const stage = ops.alloc(x), xNew = ops.alloc(x), err = ops.alloc(x);
  let nfe = 0, steps = 0, rejected = 0;
  try {
    await f(x, t0, k[0]);
    nfe++;
    let h = opts.h0 ?? 0;
    if (!(h > 0)) {
      // Hairer, Nørsett & Wanner, Solving ODEs I, II.4: starting step size.
      const d0 = await ops.errorNorm(x, x, x, atol, rtol);
      const d1 = await ops.errorNorm(k[0], x, x, atol, rtol);
      const h0 = d0 < 1e-5 || d1 < 1e-5 ? 1e-6 : 0.01 * d0 / d1;
      ops.lincomb(stage, [1, h0], [x, k[0]]);
      await f(stage, t0 + h0, k[1]);
      nfe++;
      ops.lincomb(err, [1, -1], [k[1], k[0]]);
      const d2 = (await ops.errorNorm(err, x, x, atol, rtol)) / h0;
      const m = Math.max(d1, d2);
      const h1 = m <= 1e-15 ? Math.max(1e-6, h0 * 1e-3) : Math.pow(0.01 / m, 1 / 5);
      h = Math.min(100 * h0, h1);
    }
    let t = t0;
    let lastRejected = false;
    while (t1 - t > 1e-12 * Math.abs(span)) {
      if (steps + rejected >= maxSteps) {
        throw new Error(`adaptive solver: ${maxSteps} steps without reaching t=${t1} (t=${t})`);
      }
      const last = t + h >= t1 - 1e-12 * Math.abs(span);
      if (last) h = t1 - t;
      for (let s = 1; s < 7; s++) {
        const a = DP_A[s];
        const out = s === 6 ? xNew : stage;
        const cs = [1], vs = [x];
        for (let j = 0; j < a.length; j++) {
          if (a[j] !== 0) {
            cs.push(h * a[j]);
            vs.push(k[j]);
          }
        }
        ops.lincomb(out, cs, vs);
        await f(out, s === 6 ? t + h : t + DP_C[s] * h, k[s]);
        nfe++;
      }
      const ec: number[] = [], ev: V[] = [];
      DP_E.forEach((e, j) => {
        if (e !== 0) {
          ec.push(h * e);
          ev.push(k[j]);
        }
      });
      ops.lincomb(err, ec, ev);
      const en = await ops.errorNorm(err, x, xNew, atol, rtol);
      if (!Number.isFinite(en)) throw new Error(`adaptive solver: non-finite error at t=${t}`);
      if (en <= 1) {
        t = last ? t1 : t + h;
        steps++;
        ops.copy(x, xNew);
        const k0 = k[0];
        k[0] = k[6];
        k[6] = k0;
        const fac = en === 0 ? 5 : Math.min(5, Math.max(0.2, 0.9 * Math.pow(en, -1 / 5)));
        h *= lastRejected ? Math.min(1, fac) : fac;
        lastRejected = false;
        if (opts.onStep) await opts.onStep(x, t, steps);
      } else {
        rejected++;
        h *= Math.max(0.2, 0.9 * Math.pow(en, -1 / 5));
        lastRejected = true;
      }
    }
  } finally {
    for (const v of [...k, stage, xNew, err]) ops.free(v);
  }
  return { nfe, steps, rejected };
}

export interface SampleOptions<V = unknown> {
  method?: Method;
  /** Fixed-step methods: number of steps (default 50). */
  steps?: number;
  /** Fixed-step methods: SD3 shift of the time grid (default 1: uniform). */
  shift?: number;
  /** Fixed-step methods: an explicit increasing time grid (overrides steps/shift). */
  grid?: number[];
  /** dopri5 tolerances. */
  atol?: number;
  rtol?: number;
  /** Called after each accepted step with the state (awaited: keep it cheap). */
  onStep?: StepFn<V>;
}

/** Integrate noise x (in place) from t=0 to t=1 into a sample. */
export function sample<V>(
  ops: VecOps<V>,
  f: VelocityFn<V>,
  x: V,
  opts: SampleOptions<V> = {},
): Promise<SolveStats> {
  const method = opts.method ?? "euler";
  if (method === "dopri5") {
    return solveAdaptive(ops, f, x, { atol: opts.atol, rtol: opts.rtol, onStep: opts.onStep });
  }
  const grid = opts.grid ?? timeGrid(opts.steps ?? 50, opts.shift ?? 1);
  return solveFixed(ops, f, x, grid, method, opts.onStep);
}
