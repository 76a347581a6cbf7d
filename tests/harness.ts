/**
 * One helper checks any op (tinygrad `test_ops` style): random inputs, the float64 reference's
 * backward against central finite differences, then the GPU forward and backward against the
 * reference with every output poisoned with NaN first, so an unwritten element fails. Outputs are
 * compared element-wise (|gpu − ref| ≤ atol + rtol·|ref|, `opTolerance`); the printed figure is
 * max|gpu − ref| / max|ref|.
 */
import { getGpu } from "../src/gpu/device.ts";
import { type Dispatch, Kernels, type Tensor } from "../src/gpu/kernels.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

export type Arrays = Record<string, Float64Array>;
export type Tensors = Record<string, Tensor>;

export interface OpTest {
  name: string;
  /** Float inputs: name → shape (random normals, times `scale[name]`). */
  inputs: Record<string, number[]>;
  scale?: Record<string, number>;
  /** Integer inputs (u32 on the GPU, passed to the reference as float64): name → shape, bound. */
  ints?: Record<string, { shape: number[]; max: number }>;
  /** Forward outputs: name → shape. */
  outputs: Record<string, number[]>;
  ref: (x: Arrays) => Arrays;
  /** Gradients of the float inputs, given the gradients `dy` of the outputs. */
  refBackward?: (x: Arrays, dy: Arrays) => Arrays;
  /** Records the forward: reads the input tensors, writes the output tensors. */
  gpu: (k: Kernels, t: Tensors) => Dispatch[];
  /**
   * Records the backward: reads t[input], t[output], t["d"+output]; writes t["d"+input] for each
   * key `refBackward` returns.
   */
  gpuBackward?: (k: Kernels, t: Tensors) => Dispatch[];
  /** Gradients the GPU accumulates into (+=): pre-filled with random values, not NaN. */
  accumulate?: string[];
  /** Skip the finite-difference check (e.g. a non-smooth op); default false. */
  skipFiniteDiff?: boolean;
  /** Relative tolerance (default 1e-4); the absolute one is ATOL_FACTOR·tol·max|ref|. */
  tol?: number;
  /**
   * Tensors held in f16 (mixed precision): input names (drawn, then rounded to f16, so the
   * reference sees exactly the GPU's values), output names, and "d"+name for the gradient of an
   * output (rounded likewise) or of an input (an f16 gradient tensor).
   */
  f16?: string[];
}

let kernelsP: Promise<Kernels> | undefined;
export function kernels(): Promise<Kernels> {
  kernelsP ??= getGpu().then((g) => new Kernels(g));
  return kernelsP;
}

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** An element-wise tolerance: |got − ref| ≤ atol + rtol·|ref| for every element. */
export interface Tolerance {
  atol: number;
  rtol: number;
}

/**
 * checkOp's absolute tolerance as a fraction of tol·max|ref| (its relative tolerance is tol).
 * Over many seeds the op tests need at most ~0.014 (the timestep embedding's ~1e-6 phase error);
 * 0.1 leaves a margin yet fails an element that is off by more than 1e-5·max|ref| + tol·|ref|.
 */
export const ATOL_FACTOR = 0.1;

/**
 * Pass iff every element has |got − ref| ≤ atol + rtol·|ref| (NaN never passes). Returns the
 * max-relative figure max|got − ref| / max|ref|; throws naming the worst element otherwise.
 */
export function assertAllClose(
  label: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol: Tolerance,
): number {
  if (got.length !== ref.length) throw new Error(`${label}: length ${got.length} != ${ref.length}`);
  let maxRef = 0, maxErr = 0, worst = -1, worstExcess = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  for (let i = 0; i < ref.length; i++) {
    const e = Math.abs(got[i] - ref[i]);
    maxErr = Math.max(maxErr, Number.isNaN(e) ? Infinity : e);
    const excess = Number.isNaN(e) ? Infinity : e - (tol.atol + tol.rtol * Math.abs(ref[i]));
    if (excess > worstExcess || (worst < 0 && excess > 0)) {
      worstExcess = excess;
      worst = i;
    }
  }
  const rel = maxErr / Math.max(maxRef, 1e-30);
  if (worst >= 0) {
    throw new Error(
      `${label}: [${worst}] got ${got[worst]}, want ${ref[worst]} (|error| ` +
        `${Math.abs(got[worst] - ref[worst]).toExponential(3)} > atol ${
          tol.atol.toExponential(2)
        } + rtol ${tol.rtol} · |ref|; max error relative to max|ref| ${
          rel.toExponential(3)
        }, seed ${TEST_SEED})`,
    );
  }
  return rel;
}

/**
 * Pass iff max|got − ref| ≤ tol·max|ref| + 1e-6: one absolute bound for every element, scaled by
 * the largest reference value (whole-model and optimizer comparisons, where an element's error
 * comes from sums over many others). Returns max|got − ref| / max|ref|.
 */
export function assertClose(
  label: string,
  got: ArrayLike<number>,
  ref: ArrayLike<number>,
  tol = 1e-4,
): number {
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  return assertAllClose(label, got, ref, { atol: tol * maxRef + 1e-6, rtol: 0 });
}

/** checkOp's element-wise tolerance for a reference output. */
export function opTolerance(ref: ArrayLike<number>, tol = 1e-4): Tolerance {
  let maxRef = 0;
  for (let i = 0; i < ref.length; i++) maxRef = Math.max(maxRef, Math.abs(ref[i]));
  return { atol: ATOL_FACTOR * tol * maxRef, rtol: tol };
}

/** Check the reference backward against central finite differences of Σ dy·f(x). */
export function finiteDiffCheck(spec: OpTest, x: Arrays, dy: Arrays, rng: Rng): void {
  if (!spec.refBackward || spec.skipFiniteDiff) return;
  const grads = spec.refBackward(x, dy);
  const loss = (xs: Arrays) => {
    const y = spec.ref(xs);
    let s = 0;
    for (const k of Object.keys(dy)) for (let i = 0; i < dy[k].length; i++) s += dy[k][i] * y[k][i];
    return s;
  };
  for (const [name, g] of Object.entries(grads)) {
    const xi = x[name];
    const picks = xi.length <= 24
      ? [...xi.keys()]
      : Array.from({ length: 24 }, () => Math.floor(rng.uniform() * xi.length));
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    for (const i of picks) {
      const h = 1e-5 * Math.max(1, Math.abs(xi[i]));
      const orig = xi[i];
      xi[i] = orig + h;
      const lp = loss(x);
      xi[i] = orig - h;
      const lm = loss(x);
      xi[i] = orig;
      const num = (lp - lm) / (2 * h);
      const err = Math.abs(num - g[i]);
      if (!(err <= 1e-5 * Math.max(gmax, 1e-3) + 1e-7)) {
        throw new Error(
          `${spec.name}: reference d${name}[${i}] = ${
            g[i]
          }, finite difference ${num} (seed ${TEST_SEED})`,
        );
      }
    }
  }
}

/** Run the full check of one op; logs the measured errors. */
export async function checkOp(spec: OpTest): Promise<void> {
  if (!spec.refBackward !== !spec.gpuBackward) {
    throw new Error(
      `${spec.name}: give both refBackward and gpuBackward (or neither); ` +
        `only ${spec.refBackward ? "refBackward" : "gpuBackward"} is set`,
    );
  }
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ hash(spec.name));
  const half = new Set(spec.f16 ?? []);
  const dtype = (n: string) => (half.has(n) ? "f16" as const : undefined);
  const round = (n: string, v: Float64Array) => (half.has(n) ? roundF16(v) : v);
  const x: Arrays = {};
  for (const [n, s] of Object.entries(spec.inputs)) {
    x[n] = round(n, rng.normals(size(s), spec.scale?.[n] ?? 1));
  }
  const t: Tensors = {};
  for (const [n, s] of Object.entries(spec.inputs)) {
    t[n] = k.tensor(s, n, dtype(n));
    k.write(t[n], Float32Array.from(x[n]));
  }
  for (const [n, { shape, max }] of Object.entries(spec.ints ?? {})) {
    const v = rng.ints(size(shape), max);
    x[n] = Float64Array.from(v);
    t[n] = k.tensor(shape, n);
    k.write(t[n], Uint32Array.from(v));
  }
  for (const [n, s] of Object.entries(spec.outputs)) {
    t[n] = k.tensor(s, n, dtype(n));
    k.fill(t[n], NaN);
  }
  const ref = spec.ref(x);
  await k.run(spec.gpu(k, t));
  const errs: string[] = [];
  for (const n of Object.keys(spec.outputs)) {
    const got = await k.read(t[n]);
    const e = assertAllClose(
      `${spec.name} forward ${n}`,
      got,
      ref[n],
      opTolerance(ref[n], spec.tol),
    );
    errs.push(`${n} ${e.toExponential(2)}`);
  }
  if (spec.refBackward && spec.gpuBackward) {
    const dy: Arrays = {};
    for (const [n, s] of Object.entries(spec.outputs)) {
      dy[n] = round("d" + n, rng.normals(size(s)));
      t["d" + n] = k.tensor(s, "d" + n, dtype("d" + n));
      k.write(t["d" + n], Float32Array.from(dy[n]));
    }
    finiteDiffCheck(spec, x, dy, rng);
    const grads = spec.refBackward(x, dy);
    const init: Arrays = {};
    for (const n of Object.keys(grads)) {
      const shape = spec.inputs[n];
      t["d" + n] = k.tensor(shape, "d" + n, dtype("d" + n));
      if (spec.accumulate?.includes(n)) {
        init[n] = round("d" + n, rng.normals(size(shape)));
        k.write(t["d" + n], Float32Array.from(init[n]));
      } else k.fill(t["d" + n], NaN);
    }
    await k.run(spec.gpuBackward(k, t));
    for (const [n, g] of Object.entries(grads)) {
      const want = init[n] ? g.map((v, i) => v + init[n][i]) : g;
      const got = await k.read(t["d" + n]);
      const e = assertAllClose(
        `${spec.name} backward d${n}`,
        got,
        want,
        opTolerance(want, spec.tol),
      );
      errs.push(`d${n} ${e.toExponential(2)}`);
    }
  }
  console.log(`  ${spec.name}: relative error ${errs.join(", ")}`);
}

/** Each value rounded to the nearest f16 (round to nearest even, as the GPU's casts). */
export function roundF16(a: ArrayLike<number>): Float64Array {
  return Float64Array.from(new Float16Array(Array.from(a)));
}

/** f16's unit roundoff 2^-11: the relative error of one rounding to f16. */
export const U16 = 2 ** -11;

/**
 * Register an f16 test: ignored, with the reason printed, where the adapter lacks shader-f16.
 * Call at module level with `await`.
 */
export async function testF16(name: string, fn: () => Promise<void> | void): Promise<void> {
  const ok = (await kernels()).gpu.features.has("shader-f16");
  if (!ok) console.log(`skipping "${name}": the adapter lacks shader-f16`);
  Deno.test({ name, ignore: !ok, fn });
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}
