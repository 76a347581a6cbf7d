/**
 * One product of tasks/matmul_bench.ts recorded, timed and checked. Inputs are views of one
 * random buffer per precision (operand 1 at element 0, operand 2 at element `off`; a
 * 1,000,003-value pattern repeated); 8 sampled outputs are compared with float64 dot products
 * (error relative to sqrt(Σ products²): f32 < 1e-4, f16 < 0.05, else the result is WRONG).
 */
import type { Dispatch, DType, Kernels, Tensor } from "../src/gpu/kernels.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
} from "../src/ops/linear.ts";
import { castF32ToF16 } from "../src/ops/cast.ts";
import { lcgValues, medianBatchMs, Timer } from "./bench_timing.ts";
import type { Case, Prec } from "./matmul_cases.ts";

const PERIOD = 1_000_003;
const pattern = lcgValues(PERIOD, 12345, 2);
const pattern16 = Float32Array.from(new Float16Array(pattern));
const valueAt = (prec: Prec, i: number) => (prec === "f16" ? pattern16 : pattern)[i % PERIOD];

interface Recorded {
  ds: Dispatch[];
  out: Tensor;
  owned: Tensor[];
  /** [want, sqrt(Σ products²)] of output element i. */
  ref: (i: number) => [number, number];
}

/** What each mode of the bench works with. */
export interface MatmulRun {
  k: Kernels;
  /** The adapter's name, for the reports' titles. */
  gpuName: string;
  /** --name=value and bare --flag arguments. */
  kv: Record<string, string>;
  flags: Set<string>;
  precs: Prec[];
  /** The products to time, and the model's (the probe's fc1). */
  cases: Case[];
  model: Case[];
  products: Products;
}

export interface Timing {
  ms: number;
  tflops: number;
  err: number;
  wrong: boolean;
  compileMs: number;
  dispatches: string;
}

/** Records, times and checks products; inputs sized for the largest of `cases`. */
export class Products {
  private readonly rnd: Record<Prec, Tensor | null> = { f32: null, f16: null };
  /** Element offset of operand 2 in the random buffer. */
  private readonly off: number;
  private readonly timer: Timer;

  /** `batchMs`: length of one timing batch. */
  constructor(readonly k: Kernels, cases: Case[], readonly batchMs: number) {
    const maxOperand = Math.max(
      ...cases.map((c) => Math.max(c.M * c.K, c.N * c.K, c.M * c.N, 128 * 6 * c.N)),
    );
    this.off = Math.ceil(maxOperand / 128) * 128;
    this.timer = new Timer(k);
  }

  /** The random buffer of a precision (written on first use). */
  randomBuffer(prec: Prec): Tensor {
    const { k, rnd, off } = this;
    if (rnd[prec]) return rnd[prec]!;
    if (!rnd.f32) {
      const t = k.tensor([2 * off], "random f32");
      for (let at = 0; at < 2 * off; at += PERIOD) {
        k.write(t, pattern.subarray(0, Math.min(PERIOD, 2 * off - at)), at);
      }
      rnd.f32 = t;
    }
    if (prec === "f16") {
      const t = k.tensor([2 * off], "random f16", "f16");
      k.submit(castF32ToF16(k, rnd.f32, t));
      rnd.f16 = t;
    }
    return rnd[prec]!;
  }

  private view(prec: Prec, at: number, shape: number[]): Tensor {
    const base = this.randomBuffer(prec);
    const length = shape.reduce((a, b) => a * b, 1);
    return { ...base, offset: at * (prec === "f16" ? 2 : 4), length, shape };
  }

  private record(c: Case, prec: Prec, opts: LinearOptions): Recorded {
    const { k, off: OFF } = this;
    const view = (prec: Prec, at: number, shape: number[]) => this.view(prec, at, shape);
    const { M, N, K } = c;
    const h: DType | undefined = prec === "f16" ? "f16" : undefined;
    const owned: Tensor[] = [];
    const own = (shape: number[], dt?: DType) => {
      const t = k.tensor(shape, "bench", dt);
      owned.push(t);
      return t;
    };
    const dot = (n: number, a: (j: number) => number, b: (j: number) => number) => {
      let s = 0, q = 0;
      for (let j = 0; j < n; j++) {
        const p = valueAt(prec, a(j)) * valueAt(prec, b(j));
        s += p;
        q += p * p;
      }
      return [s, Math.sqrt(q)] as [number, number];
    };
    if (c.op === "fwd") {
      const x = view(prec, 0, [M, K]), w = view(prec, OFF, [N, K]), b = view(prec, 0, [N]);
      const out = own([M, N], h);
      const o: LinearOptions = { ...opts };
      if (c.epi === "gelu") o.gelu = true;
      if (c.epi === "gelu") o.pre = own([M, N], h);
      if (c.epi === "gate") {
        o.gate = { mod: view(prec, 0, [128, 6 * N]), chunk: 5 };
        o.residual = view(prec, OFF, [M, N]);
        o.pre = own([M, N], h);
      }
      const ref = (i: number): [number, number] => {
        const m = Math.floor(i / N), n = i % N;
        const [s, q] = dot(K, (j) => m * K + j, (j) => OFF + n * K + j);
        return [s + valueAt(prec, n), q];
      };
      return { ds: linearForward(k, x, w, b, out, o), out: o.pre ?? out, owned, ref };
    }
    if (c.op === "dx") {
      const dy = view(prec, 0, [M, N]), w = view(prec, OFF, [N, K]);
      const out = own([M, K], h);
      const o: LinearOptions = { ...opts };
      if (c.epi === "geluGrad") o.geluGrad = view(prec, OFF, [M, K]);
      const ref = (i: number): [number, number] => {
        const m = Math.floor(i / K), kk = i % K;
        const [s, q] = dot(N, (j) => m * N + j, (j) => OFF + j * K + kk);
        if (!c.epi) return [s, q];
        // gelu'(h) at h = the value at OFF + i (same expression as the kernel, in f64).
        const v = valueAt(prec, OFF + i), C = Math.sqrt(2 / Math.PI);
        const th = Math.tanh(C * (v + 0.044715 * v ** 3));
        const g = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * C * (1 + 3 * 0.044715 * v * v);
        return [s * g, q];
      };
      return { ds: linearBackwardInput(k, dy, w, out, o), out, owned, ref };
    }
    const dy = view(prec, 0, [M, N]), x = view(prec, OFF, [M, K]);
    const out = own([N, K]), db = own([N]);
    const ref = (i: number): [number, number] => {
      const n = Math.floor(i / K), kk = i % K;
      return dot(M, (j) => j * N + n, (j) => OFF + j * K + kk);
    };
    return { ds: linearBackwardWeight(k, dy, x, out, db, opts), out, owned, ref };
  }

  /** Seconds per run of `ds` (already warm): one estimate, then the median of 3 batches. */
  async medianTime(ds: Dispatch[]): Promise<number> {
    return await medianBatchMs(this.timer, ds, this.batchMs, 5000) / 1e3;
  }

  /** A few elements of a tensor (one 4-byte word copied per element; f16 halves picked out). */
  private async readSamples(t: Tensor, idx: number[]): Promise<number[]> {
    const { k } = this;
    const eb = t.dtype === "f16" ? 2 : 4;
    const staging = k.device.createBuffer({
      size: 4 * idx.length,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = k.device.createCommandEncoder();
    idx.forEach((i, s) => {
      const byte = t.offset + i * eb;
      enc.copyBufferToBuffer(t.buffer, byte - (byte % 4), staging, 4 * s, 4);
    });
    k.device.queue.submit([enc.finish()]);
    await staging.mapAsync(GPUMapMode.READ);
    const bytes = staging.getMappedRange().slice(0);
    staging.unmap();
    staging.destroy();
    return idx.map((i, s) => {
      if (eb === 4) return new Float32Array(bytes, 4 * s, 1)[0];
      return new Float16Array(bytes, 4 * s, 2)[((t.offset + i * 2) % 4) / 2];
    });
  }

  /** Time one product with one set of options; a string says why it could not run. */
  async measure(c: Case, prec: Prec, opts: LinearOptions): Promise<Timing | string> {
    const t0 = performance.now();
    let r: Recorded;
    try {
      r = this.record(c, prec, opts);
      await this.k.run(r.ds); // compile + warm up
    } catch (e) {
      return `n/a (${(e as Error).message.split("\n")[0].slice(0, 120)})`;
    }
    const compileMs = performance.now() - t0;
    try {
      const sec = await this.medianTime(r.ds);
      const idx = Array.from(
        { length: 8 },
        (_, s) => Math.floor(((s * 2654435761 + 12345) >>> 0) / 4294967296 * r.out.length),
      );
      const got = await this.readSamples(r.out, idx);
      let err = 0;
      idx.forEach((i, s) => {
        const [want, scale] = r.ref(i);
        err = Math.max(err, Math.abs(got[s] - want) / Math.max(scale, 1e-30));
      });
      if (Number.isNaN(err)) err = Infinity;
      const wrong = !(err < (prec === "f16" ? 0.05 : 1e-4));
      return {
        ms: sec * 1e3,
        tflops: 2 * c.M * c.N * c.K / sec / 1e12,
        err,
        wrong,
        compileMs,
        dispatches: r.ds.map((d) => `${d.label}[${d.workgroups}]`).join(" "),
      };
    } finally {
      for (const t of r.owned) t.buffer.destroy();
    }
  }
}
