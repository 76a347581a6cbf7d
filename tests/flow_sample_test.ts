/**
 * Flow sampling against an analytic flow. Flow matching from x0 ~ N(0, I) to x1 ~ N(μ, σ²I)
 * (independent coupling) with x_t = (1−t)x0 + t·x1 has the Gaussian marginal N(tμ, s(t)²I),
 * s(t)² = (1−t)² + t²σ², and the marginal velocity field is linear in x:
 *   v(x, t) = μ + a(t)·(x − tμ),   a(t) = s'(t)/s(t) = (tσ² − (1−t))/s(t)².
 * Its flow map is x(t) = tμ + s(t)·x(0), so the exact endpoint is x(1) = μ + σ·x(0).
 * (The deterministic coupling x1 = μ + σx0 would give straight trajectories, on which every
 * solver is exact: useless for measuring orders.)
 *
 * Every component obeys the same scalar ODE z' = a(t)z (z = x − tμ) and every Runge–Kutta method
 * integrates the tμ part exactly, so a solver's endpoint is μ + R_h·x(0) with one scalar R_h: the
 * truncation error is (R_h − σ)·x(0). We measure it as the least-squares coefficient of the error
 * on x(0) over many components, which averages float32 rounding out.
 */
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import type { Kernels, Tensor } from "../src/gpu/kernels.ts";
import { CpuVecOps, type VecOps } from "../src/flow/vecops.ts";
import { GpuVecOps } from "../src/ops/vecops.ts";
import { cfgCombine, cfgVelocity } from "../src/flow/guidance.ts";
import {
  type FixedMethod,
  sample,
  shiftSigma,
  solveAdaptive,
  solveFixed,
  timeGrid,
  uniformGrid,
  type VelocityFn,
} from "../src/flow/sample.ts";
import { dropLabels, FlowPath, interpolate, sampleTimes } from "../src/flow/path.ts";
import { SeededRng } from "../src/rng.ts";

const N = 4096;

function assertAlmostEquals(got: number, want: number, tol: number, what = "value") {
  if (!(Math.abs(got - want) <= tol)) throw new Error(`${what}: ${got}, want ${want} ± ${tol}`);
}

/** The analytic problem on one backend: noise x0, mean μ, and how to upload/read vectors. */
interface Backend<V> {
  name: string;
  ops: VecOps<V>;
  make(data: Float32Array): V;
  read(v: V): Promise<Float32Array>;
}

function cpuBackend(): Backend<Float32Array> {
  return {
    name: "cpu",
    ops: new CpuVecOps(),
    make: (d) => d.slice(),
    read: (v) => Promise.resolve(v.slice()),
  };
}

function gpuBackend(k: Kernels): Backend<Tensor> {
  return {
    name: "gpu",
    ops: new GpuVecOps(k),
    make: (d) => {
      const t = k.tensor([d.length], "vec");
      k.write(t, d);
      return t;
    },
    read: (v) => k.read(v),
  };
}

function velocity<V>(ops: VecOps<V>, mu: V, sigma: number): VelocityFn<V> & { calls: number } {
  const fn = (x: V, t: number, out: V) => {
    fn.calls++;
    const a = (t * sigma * sigma - (1 - t)) / ((1 - t) ** 2 + t * t * sigma * sigma);
    ops.lincomb(out, [a, 1 - a * t], [x, mu]);
  };
  fn.calls = 0;
  return fn;
}

function problem(seed: number, sigma: number) {
  const rng = new Rng(seed);
  const x0 = Float32Array.from(rng.normals(N));
  const mu = Float32Array.from(rng.normals(N));
  const exact = Float64Array.from(x0, (v, i) => mu[i] + sigma * v);
  return { x0, mu, exact };
}

/** (R_h − σ): least-squares coefficient of the endpoint error on x(0); and the max error. */
function errors(got: Float32Array, exact: Float64Array, x0: Float32Array) {
  let num = 0, den = 0, max = 0;
  for (let i = 0; i < got.length; i++) {
    const e = got[i] - exact[i];
    num += e * x0[i];
    den += x0[i] * x0[i];
    max = Math.max(max, Math.abs(e));
  }
  return { coef: Math.abs(num / den), max };
}

/**
 * Expected ratio of errors when the steps double, with the step counts and σ where each method
 * is in its asymptotic range yet well above float32 rounding. The explicit midpoint rule is
 * superconvergent (third order) on these Gaussian flows, hence 1/8; `midpoint-generic` below
 * checks its second order on a field where that does not happen.
 */
const ORDERS: { method: FixedMethod; sigma: number; steps: number; ratio: number; tol: number }[] =
  [
    { method: "euler", sigma: 0.5, steps: 32, ratio: 1 / 2, tol: 0.04 },
    { method: "heun", sigma: 2, steps: 32, ratio: 1 / 4, tol: 0.03 },
    { method: "midpoint", sigma: 2, steps: 16, ratio: 1 / 8, tol: 0.015 },
    { method: "rk4", sigma: 7, steps: 16, ratio: 1 / 16, tol: 0.012 },
  ];

async function checkOrders<V>(b: Backend<V>) {
  for (const { method, sigma, steps, ratio, tol } of ORDERS) {
    const { x0, mu, exact } = problem(TEST_SEED, sigma);
    const muV = b.make(mu);
    const errs = [];
    for (const n of [steps, 2 * steps]) {
      const x = b.make(x0);
      const f = velocity(b.ops, muV, sigma);
      const st = await solveFixed(b.ops, f, x, uniformGrid(n), method);
      const per = { euler: 1, heun: 2, midpoint: 2, rk4: 4 }[method];
      if (st.nfe !== per * n || f.calls !== st.nfe) {
        throw new Error(`${method}: nfe ${st.nfe}, calls ${f.calls}, want ${per * n}`);
      }
      errs.push(errors(await b.read(x), exact, x0));
      b.ops.free(x);
    }
    const r = errs[1].coef / errs[0].coef;
    console.log(
      `  ${b.name} ${method} σ=${sigma}: error ${errs[0].coef.toExponential(2)} → ` +
        `${errs[1].coef.toExponential(2)} (max ${errs[1].max.toExponential(2)}), ratio ` +
        `${r.toFixed(4)} (want ${ratio.toFixed(4)})`,
    );
    // The max error is a sanity bound only: float32 rounding dominates it for RK4.
    if (!(Math.abs(r - ratio) <= tol) || !(errs[1].max < Math.max(errs[0].max, 1e-4))) {
      throw new Error(`${b.name} ${method}: error ratio ${r}, want ${ratio} ± ${tol}`);
    }
  }
}

/** Midpoint's second order on a field where it is not superconvergent: z' = −2t·z. */
async function checkMidpointGeneric<V>(b: Backend<V>) {
  // z(t) = z(0)·exp(−t²).
  const rng = new Rng(TEST_SEED ^ 7);
  const z0 = Float32Array.from(rng.normals(N));
  const exact = Float64Array.from(z0, (v) => v * Math.exp(-1));
  const f: VelocityFn<V> = (x, t, out) => b.ops.lincomb(out, [-2 * t], [x]);
  const errs = [];
  for (const n of [32, 64]) {
    const x = b.make(z0);
    await solveFixed(b.ops, f, x, uniformGrid(n), "midpoint");
    errs.push(errors(await b.read(x), exact, z0).coef);
    b.ops.free(x);
  }
  const r = errs[1] / errs[0];
  console.log(`  ${b.name} midpoint on z' = −2t·z: ratio ${r.toFixed(4)} (want 0.25)`);
  if (!(Math.abs(r - 0.25) <= 0.03)) throw new Error(`midpoint generic ratio ${r}`);
}

async function checkAdaptive<V>(b: Backend<V>) {
  const sigma = 2;
  const { x0, mu, exact } = problem(TEST_SEED ^ 3, sigma);
  const muV = b.make(mu);
  let prevNfe = 0;
  for (const tol of [1e-3, 1e-5]) {
    const x = b.make(x0);
    const f = velocity(b.ops, muV, sigma);
    const st = await solveAdaptive(b.ops, f, x, { atol: tol, rtol: tol });
    const e = errors(await b.read(x), exact, x0);
    let scale = 0;
    for (const v of exact) scale = Math.max(scale, Math.abs(v));
    console.log(
      `  ${b.name} dopri5 tol ${tol}: nfe ${st.nfe}, steps ${st.steps}, rejected ` +
        `${st.rejected}, max error ${e.max.toExponential(2)}`,
    );
    if (f.calls !== st.nfe) throw new Error("dopri5: nfe miscounted");
    // Local tolerance → global error within a small factor of tol·(1 + |x|).
    if (!(e.max <= 10 * tol * (1 + scale))) {
      throw new Error(`dopri5 tol ${tol}: max error ${e.max}`);
    }
    if (!(st.nfe > prevNfe)) throw new Error("dopri5: a tighter tolerance must cost more NFE");
    prevNfe = st.nfe;
    b.ops.free(x);
  }
}

Deno.test("fixed-step solver orders on CpuVecOps", () => checkOrders(cpuBackend()));
Deno.test("fixed-step solver orders on GpuVecOps", async () =>
  checkOrders(gpuBackend(await kernels())));
Deno.test("midpoint is second order on a generic field", async () => {
  await checkMidpointGeneric(cpuBackend());
  await checkMidpointGeneric(gpuBackend(await kernels()));
});
Deno.test("dopri5 meets its tolerance on CpuVecOps", () => checkAdaptive(cpuBackend()));
Deno.test("dopri5 meets its tolerance on GpuVecOps", async () =>
  checkAdaptive(gpuBackend(await kernels())));

Deno.test("onStep sees each step's state: fixed steps as on the truncated grid, dopri5 to t=1", async () => {
  const { x0, mu } = problem(TEST_SEED ^ 0x57e9, 0.5);
  const ops = new CpuVecOps();
  const f = velocity(ops, mu, 0.5);
  for (const method of ["euler", "heun", "rk4"] as const) {
    const grid = timeGrid(5, 3);
    const seen: { t: number; step: number; x: Float32Array }[] = [];
    const x = x0.slice();
    await solveFixed(ops, f, x, grid, method, (xs, t, step) => {
      seen.push({ t, step, x: xs.slice() });
    });
    if (seen.length !== 5) throw new Error(`${method}: ${seen.length} calls for 5 steps`);
    for (let i = 0; i < 5; i++) {
      assertAlmostEquals(seen[i].t, grid[i + 1], 0, `${method} step ${i + 1} time`);
      assertAlmostEquals(seen[i].step, i + 1, 0, `${method} step number`);
      const want = x0.slice();
      await solveFixed(ops, f, want, grid.slice(0, i + 2), method);
      assertClose(`${method} state after step ${i + 1}`, seen[i].x, want, 0);
    }
    assertClose(`${method} last state`, seen[4].x, x, 0);
  }
  const x = x0.slice();
  const ts: number[] = [];
  const stats = await sample(ops, f, x, {
    method: "dopri5",
    atol: 1e-5,
    rtol: 1e-5,
    onStep: (_, t) => void ts.push(t),
  });
  if (ts.length !== stats.steps) {
    throw new Error(`dopri5: ${ts.length} calls, ${stats.steps} steps`);
  }
  if (!ts.every((t, i) => t > (ts[i - 1] ?? 0))) throw new Error(`dopri5 times ${ts}`);
  assertAlmostEquals(ts[ts.length - 1], 1, 0, "dopri5 last time");
});

Deno.test("GpuVecOps lincomb, axpy, copy and errorNorm match the CPU", async () => {
  const k = await kernels();
  const gpu = gpuBackend(k), cpu = cpuBackend();
  const rng = new Rng(TEST_SEED ^ 11);
  const n = 1000; // ragged: 4 workgroups, the last one partial
  const vs = Array.from({ length: 8 }, () => Float32Array.from(rng.normals(n)));
  const cs = [0.5, -1.25, 2, 0.125, -0.75, 3, 1.5];
  for (let m = 0; m <= 7; m++) {
    // out not among the terms: poisoned with NaN, never read.
    const out = gpu.make(new Float32Array(n).fill(NaN));
    gpu.ops.lincomb(out, cs.slice(0, m), vs.slice(0, m).map((v) => gpu.make(v)));
    const want = new Float64Array(n);
    for (let j = 0; j < m; j++) for (let i = 0; i < n; i++) want[i] += cs[j] * vs[j][i];
    assertClose(`lincomb${m}`, await gpu.read(out), want, 1e-6);
  }
  // out among the terms (in place), a duplicated term, 7 others + out.
  const o = gpu.make(vs[7]), oc = cpu.make(vs[7]);
  const ts = vs.slice(0, 7).map((v) => gpu.make(v));
  gpu.ops.lincomb(o, [0.5, ...cs], [o, ...ts]);
  cpu.ops.lincomb(oc, [0.5, ...cs], [oc, ...vs.slice(0, 7)]);
  const want = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    want[i] = 0.5 * vs[7][i];
    for (let j = 0; j < 7; j++) want[i] += cs[j] * vs[j][i];
  }
  assertClose("lincomb in place", await gpu.read(o), want, 1e-6);
  assertClose("cpu lincomb in place", oc, want, 1e-6);
  gpu.ops.lincomb(o, [1, 2], [ts[0], ts[0]]);
  assertClose("lincomb duplicate", await gpu.read(o), vs[0].map((v) => 3 * v), 1e-6);
  gpu.ops.axpy(o, -2, ts[1]);
  assertClose("axpy", await gpu.read(o), vs[0].map((v, i) => 3 * v - 2 * vs[1][i]), 1e-6);
  gpu.ops.copy(o, ts[2]);
  assertClose("copy", await gpu.read(o), vs[2], 0);
  // Same recorded dispatch, coefficients rewritten between submissions without a read-back.
  const acc = gpu.make(new Float32Array(n));
  for (let s = 1; s <= 5; s++) gpu.ops.lincomb(acc, [1, s], [acc, ts[3]]);
  assertClose("rewritten coefficients", await gpu.read(acc), vs[3].map((v) => 15 * v), 1e-6);
  const en = await gpu.ops.errorNorm(ts[0], ts[1], ts[2], 1e-3, 1e-2);
  const ec = await cpu.ops.errorNorm(vs[0], vs[1], vs[2], 1e-3, 1e-2);
  assertAlmostEquals(en, ec, 1e-5 * ec);
  for (const t of [o, acc, ...ts]) gpu.ops.free(t);
});

Deno.test("shifted time grid follows SD3's formula", async () => {
  // s = 3, 4 steps: σ = 1, .75, .5, .25, 0 → σ' = 3σ/(1+2σ) = 1, .9, .75, .5, 0.
  const g = timeGrid(4, 3);
  [0, 0.1, 0.25, 0.5, 1].forEach((t, i) => assertAlmostEquals(g[i], t, 1e-12));
  assertClose("shift 1 is uniform", timeGrid(7, 1), uniformGrid(7), 0);
  for (const s of [0.5, 2, 3.7]) {
    const grid = timeGrid(13, s);
    for (let i = 0; i <= 13; i++) {
      const sig = 1 - i / 13;
      assertAlmostEquals(grid[i], 1 - s * sig / (1 + (s - 1) * sig), 1e-12);
      if (i > 0 && !(grid[i] > grid[i - 1])) throw new Error("grid not increasing");
    }
    // s > 1: the first step (near noise) is smaller than uniform.
    if (s > 1 && !(grid[1] < 1 / 13)) throw new Error("shift > 1 must refine the noise end");
  }
  assertAlmostEquals(shiftSigma(0.5, 3), 0.75, 1e-15);
  // sample() with a shifted grid is solveFixed on timeGrid.
  const ops = new CpuVecOps();
  const ts: number[] = [];
  const f: VelocityFn<Float32Array> = (_x, t, out) => {
    ts.push(t);
    out.fill(1);
  };
  const x = new Float32Array(3);
  const st = await sample(ops, f, x, { method: "euler", steps: 4, shift: 3 });
  assertClose("euler times", ts, [0, 0.1, 0.25, 0.5], 1e-12);
  assertClose("euler on v=1 ends at 1", x, [1, 1, 1], 1e-6);
  if (st.nfe !== 4) throw new Error(`nfe ${st.nfe}`);
});

Deno.test("CFG combine and guidance interval", async () => {
  const k = await kernels();
  for (const b of [cpuBackend(), gpuBackend(k)] as Backend<unknown>[]) {
    const rng = new Rng(TEST_SEED ^ 5);
    const n = 333;
    const vc = Float32Array.from(rng.normals(n)), vu = Float32Array.from(rng.normals(n));
    for (const s of [0, 1, 4.5]) {
      const out = b.make(new Float32Array(n).fill(NaN));
      cfgCombine(b.ops, b.make(vc), b.make(vu), s, out);
      const want = Float64Array.from(vc, (c, i) => vu[i] + s * (c - vu[i]));
      assertClose(`${b.name} cfg s=${s}`, await b.read(out), want, 1e-6);
    }
    // In place on vc.
    const c = b.make(vc);
    cfgCombine(b.ops, c, b.make(vu), 3, c);
    const want3 = Float64Array.from(vc, (cv, i) => vu[i] + 3 * (cv - vu[i]));
    assertClose(`${b.name} cfg in place`, await b.read(c), want3, 1e-6);
    // Guided velocity: conditional = x + 1, unconditional = 2x (as lincombs).
    const one = b.make(new Float32Array(n).fill(1));
    let uncondCalls = 0;
    const cond: VelocityFn<unknown> = (x, _t, out) => b.ops.lincomb(out, [1, 1], [x, one]);
    const uncond: VelocityFn<unknown> = (x, _t, out) => {
      uncondCalls++;
      b.ops.lincomb(out, [2], [x]);
    };
    const g = cfgVelocity(b.ops, cond, uncond, { scale: 2.5, interval: [0.2, 0.6] });
    const x = b.make(vc), out = b.make(new Float32Array(n));
    for (const t of [0.1, 0.2, 0.4, 0.6, 0.9]) {
      await g(x, t, out);
      const inside = t >= 0.2 && t <= 0.6;
      const w = Float64Array.from(vc, (xv) => inside ? 2 * xv + 2.5 * (xv + 1 - 2 * xv) : xv + 1);
      assertClose(`${b.name} guided t=${t}`, await b.read(out), w, 1e-6);
    }
    if (uncondCalls !== 3) throw new Error(`unconditional evaluated ${uncondCalls} times, want 3`);
    g.free();
  }
});

Deno.test("training time sampling, noise and label dropout statistics", () => {
  const n = 200000;
  const rng = new SeededRng(TEST_SEED);
  const moments = (a: ArrayLike<number>) => {
    let s = 0, s2 = 0;
    for (let i = 0; i < a.length; i++) {
      s += a[i];
      s2 += a[i] * a[i];
    }
    const m = s / a.length;
    return { mean: m, std: Math.sqrt(s2 / a.length - m * m) };
  };
  const u = moments(sampleTimes(rng, new Float32Array(n)));
  assertAlmostEquals(u.mean, 0.5, 0.005);
  assertAlmostEquals(u.std, Math.sqrt(1 / 12), 0.005);
  for (const [m, s] of [[0, 1], [0.5, 0.8], [-1, 1.5]]) {
    const t = sampleTimes(rng, new Float32Array(n), { kind: "logit-normal", mean: m, std: s });
    let min = 1, max = 0;
    const logit = Float64Array.from(t, (tv) => {
      min = Math.min(min, tv);
      max = Math.max(max, tv);
      const sig = 1 - tv; // SD3: σ = 1 − t = sigmoid(u)
      return Math.log(sig / (1 - sig));
    });
    const st = moments(logit.filter(Number.isFinite));
    console.log(
      `  logit-normal(${m}, ${s}): logit σ mean ${st.mean.toFixed(4)} std ${st.std.toFixed(4)}`,
    );
    assertAlmostEquals(st.mean, m, 0.02);
    assertAlmostEquals(st.std, s, 0.02);
    if (!(min >= 0 && max <= 1)) throw new Error("t outside [0,1]");
  }
  const z = moments(rng.normals(new Float32Array(n)));
  assertAlmostEquals(z.mean, 0, 0.01);
  assertAlmostEquals(z.std, 1, 0.01);
  const labels = dropLabels(rng, new Int32Array(n).fill(3), 0.1, 10);
  const dropped = labels.filter((l) => l === 10).length / n;
  assertAlmostEquals(dropped, 0.1, 0.004);
  if (labels.some((l) => l !== 3 && l !== 10)) throw new Error("dropout changed a label wrongly");
});

Deno.test("FlowPath state round-trips and interpolate matches the definition", () => {
  const path = new FlowPath(TEST_SEED, {
    numClasses: 10,
    timeSampling: { kind: "logit-normal" },
  });
  const labels = Int32Array.from({ length: 64 }, (_, i) => i % 10);
  path.sample(labels, 5);
  const saved = JSON.parse(JSON.stringify(path.state()));
  const a = [path.sample(labels, 5), path.sample(labels, 5)];
  const resumed = new FlowPath(0, { numClasses: 10, timeSampling: { kind: "logit-normal" } });
  resumed.restore(saved);
  const b = [resumed.sample(labels, 5), resumed.sample(labels, 5)];
  for (let i = 0; i < 2; i++) {
    assertClose("t", b[i].t, a[i].t, 0);
    assertClose("noise", b[i].noise, a[i].noise, 0);
    assertClose("labels", b[i].labels, a[i].labels, 0);
  }
  if (a[0].noise.length !== 64 * 5) throw new Error("noise length");
  const x0 = Float32Array.from([1, 2, 3, 4]), x1 = Float32Array.from([5, 6, 7, 8]);
  const { xt, v } = interpolate(x0, x1, Float32Array.from([0.25, 1]));
  assertClose("xt", xt, [2, 3, 7, 8], 1e-7);
  assertClose("v", v, [4, 4, 4, 4], 0);
});
