/**
 * The vector operations the ODE solvers use, over CPU arrays or GPU tensors. Solvers see only
 * this interface, so the same solver code runs on both; the GPU version never reads back except
 * in `errorNorm` (the adaptive solver's step control).
 */
import { type Dispatch, grid, type Kernels, type Tensor, tensorBytes } from "../gpu/kernels.ts";
import code from "../../shaders/vecops.wgsl" with { type: "text" };

/** The most vectors one `lincomb` combines (besides `out` itself). */
export const MAX_TERMS = 7;

export interface VecOps<V> {
  /** A new vector shaped like `like` (contents unspecified). */
  alloc(like: V): V;
  /** Release a vector made by `alloc` (others are left alone). */
  free(v: V): void;
  /** dst ← src. */
  copy(dst: V, src: V): void;
  /** y ← y + a·x. */
  axpy(y: V, a: number, x: V): void;
  /**
   * out ← Σ coeffs[i]·vecs[i]. `out` may be one of `vecs` (its old value is used); up to
   * MAX_TERMS vectors other than `out`.
   */
  lincomb(out: V, coeffs: number[], vecs: V[]): void;
  /**
   * The adaptive solver's error norm: sqrt(mean_i (err_i / (atol + rtol·max(|x_i|, |y_i|)))²).
   * Reads back on the GPU.
   */
  errorNorm(err: V, x: V, y: V, atol: number, rtol: number): Promise<number>;
}

/** Merge duplicate vectors and pull `out` out of the terms: out ← cout·out + Σ c·v. */
function normalise<V>(out: V, coeffs: number[], vecs: V[]) {
  if (coeffs.length !== vecs.length) {
    throw new Error(`lincomb: ${coeffs.length} coefficients for ${vecs.length} vectors`);
  }
  let cout = 0, hasOut = false;
  const cs: number[] = [], vs: V[] = [];
  vecs.forEach((v, i) => {
    if (v === out) {
      cout += coeffs[i];
      hasOut = true;
      return;
    }
    const j = vs.indexOf(v);
    if (j >= 0) cs[j] += coeffs[i];
    else {
      vs.push(v);
      cs.push(coeffs[i]);
    }
  });
  if (vs.length > MAX_TERMS) {
    throw new Error(`lincomb: ${vs.length} distinct vectors, at most ${MAX_TERMS}`);
  }
  return { cout, hasOut, cs, vs };
}

/** Vector operations over Float32Array (float64 arithmetic per element, f32 storage). */
export class CpuVecOps implements VecOps<Float32Array> {
  alloc(like: Float32Array): Float32Array {
    return new Float32Array(like.length);
  }
  free(_v: Float32Array): void {}
  copy(dst: Float32Array, src: Float32Array): void {
    if (dst.length !== src.length) throw new Error("copy: lengths differ");
    dst.set(src);
  }
  axpy(y: Float32Array, a: number, x: Float32Array): void {
    if (y.length !== x.length) throw new Error("axpy: lengths differ");
    for (let i = 0; i < y.length; i++) y[i] += a * x[i];
  }
  lincomb(out: Float32Array, coeffs: number[], vecs: Float32Array[]): void {
    const { cout, hasOut, cs, vs } = normalise(out, coeffs, vecs);
    for (const v of vs) if (v.length !== out.length) throw new Error("lincomb: lengths differ");
    for (let i = 0; i < out.length; i++) {
      let s = hasOut ? cout * out[i] : 0;
      for (let j = 0; j < vs.length; j++) s += cs[j] * vs[j][i];
      out[i] = s;
    }
  }
  errorNorm(
    err: Float32Array,
    x: Float32Array,
    y: Float32Array,
    atol: number,
    rtol: number,
  ): Promise<number> {
    let s = 0;
    for (let i = 0; i < err.length; i++) {
      const r = err[i] / (atol + rtol * Math.max(Math.abs(x[i]), Math.abs(y[i])));
      s += r * r;
    }
    return Promise.resolve(Math.sqrt(s / Math.max(1, err.length)));
  }
}

interface Cached {
  dispatch: Dispatch;
  params: GPUBuffer;
  ids: number[];
}

/**
 * Vector operations over GPU tensors (shaders/vecops.wgsl). Each call writes its coefficients into
 * the uniform buffer of a dispatch cached per (entry, tensors) with `queue.writeBuffer` and
 * submits at once; queue order makes the write land between the previous and this submission, so
 * a solver step needs no read-back. Tensors may live in arenas (any 256-aligned offset).
 */
export class GpuVecOps implements VecOps<Tensor> {
  private ids = new WeakMap<Tensor, number>();
  private nextId = 1;
  private cache = new Map<string, Cached>();
  private owned = new Set<Tensor>();
  private words = new ArrayBuffer(12 * 4);

  constructor(readonly k: Kernels) {}

  private id(t: Tensor): number {
    let i = this.ids.get(t);
    if (i === undefined) {
      i = this.nextId++;
      this.ids.set(t, i);
    }
    return i;
  }

  alloc(like: Tensor): Tensor {
    const t = this.k.tensor(like.shape, "vecops");
    this.owned.add(t);
    return t;
  }

  free(v: Tensor): void {
    if (!this.owned.delete(v)) return;
    const id = this.id(v);
    for (const [key, c] of this.cache) {
      if (c.ids.includes(id)) {
        c.params.destroy();
        this.cache.delete(key);
      }
    }
    v.buffer.destroy();
  }

  copy(dst: Tensor, src: Tensor): void {
    if (dst.length !== src.length) throw new Error("copy: lengths differ");
    if (dst === src) return;
    const enc = this.k.device.createCommandEncoder();
    enc.copyBufferToBuffer(src.buffer, src.offset, dst.buffer, dst.offset, tensorBytes(src));
    this.k.device.queue.submit([enc.finish()]);
  }

  axpy(y: Tensor, a: number, x: Tensor): void {
    this.lincomb(y, [1, a], [y, x]);
  }

  private get(entry: string, bindings: Tensor[]): Cached {
    const ids = bindings.map((t) => this.id(t));
    const key = `${entry}:${ids.join(",")}`;
    let c = this.cache.get(key);
    if (!c) {
      const params = this.k.uniform(new Array(12).fill(0));
      const [out, ...ins] = bindings;
      const n = out.length;
      const wg = entry === "err_norm" ? Math.ceil(ins[0].length / 256) : Math.ceil(n / 256);
      c = { dispatch: this.k.dispatch(code, entry, [out, params, ...ins], wg), params, ids };
      this.cache.set(key, c);
    }
    return c;
  }

  private run(c: Cached, n: number, hasOut: boolean, cout: number, extra: number[], cs: number[]) {
    const u = new Uint32Array(this.words), f = new Float32Array(this.words);
    f.fill(0);
    u[0] = n;
    u[1] = hasOut ? 1 : 0;
    f[2] = cout;
    f[3] = extra[0] ?? 0;
    f[4] = extra[1] ?? 0;
    cs.forEach((v, i) => f[5 + i] = v);
    this.k.device.queue.writeBuffer(c.params, 0, this.words);
    this.k.submit([c.dispatch]);
  }

  lincomb(out: Tensor, coeffs: number[], vecs: Tensor[]): void {
    const { cout, hasOut, cs, vs } = normalise(out, coeffs, vecs);
    for (const v of vs) if (v.length !== out.length) throw new Error("lincomb: lengths differ");
    const c = this.get(`lincomb${vs.length}`, [out, ...vs]);
    this.run(c, out.length, hasOut, cout, [], cs);
  }

  private partials = new Map<number, Tensor>();

  /** Destroy every buffer this object made (vectors from `alloc`, uniforms, partial sums). */
  dispose(): void {
    for (const c of this.cache.values()) c.params.destroy();
    for (const t of [...this.owned, ...this.partials.values()]) t.buffer.destroy();
    this.cache.clear();
    this.owned.clear();
    this.partials.clear();
  }

  async errorNorm(err: Tensor, x: Tensor, y: Tensor, atol: number, rtol: number): Promise<number> {
    const n = err.length;
    if (x.length !== n || y.length !== n) throw new Error("errorNorm: lengths differ");
    const g = grid(Math.ceil(n / 256));
    const total = g[0] * g[1];
    let part = this.partials.get(total);
    if (!part) {
      part = this.k.tensor([total], "err_norm partials");
      this.partials.set(total, part);
    }
    const c = this.get("err_norm", [part, err, x, y]);
    this.run(c, n, false, 0, [atol, rtol], []);
    const sums = await this.k.read(part);
    let s = 0;
    for (let i = 0; i < total; i++) s += sums[i];
    return Math.sqrt(s / Math.max(1, n));
  }
}
