/**
 * The solvers' vector operations (`VecOps` of src/flow/vecops.ts) over GPU tensors, by
 * shaders/vecops.wgsl. Each call writes its coefficients into the uniform buffer of a dispatch
 * cached per (entry, tensors) with `queue.writeBuffer` and submits at once; queue order makes the
 * write land between the previous and this submission, so a solver step needs no read-back.
 * Tensors may live in arenas (any 256-aligned offset).
 */
import { type Dispatch, grid, type Kernels, type Tensor, tensorBytes } from "../gpu/kernels.ts";
import { normaliseTerms, type VecOps } from "../flow/vecops.ts";
import { groupsFor, shader } from "./common.ts";
import source from "../../shaders/vecops.wgsl" with { type: "text" };

/** The module whose lincomb has K terms (err_norm is the same in every one: K = 0's is used). */
const codes = new Map<number, string>();
function code(terms: number): string {
  let c = codes.get(terms);
  if (!c) {
    const TERMS = Array.from({ length: terms }, (_, j) => ` + p.c${j} * v${j}[i]`).join("");
    c = shader(source, { OUT: terms + 1, TERMS });
    codes.set(terms, c);
  }
  return c;
}

interface Cached {
  dispatch: Dispatch;
  params: GPUBuffer;
  ids: number[];
}

/** Vector operations over GPU tensors; `dispose()` frees every buffer it made. */
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

  /** The cached dispatch of `entry` reading `ins` and writing `out`. */
  private get(entry: string, ins: Tensor[], out: Tensor): Cached {
    const ids = [out, ...ins].map((t) => this.id(t));
    const key = `${entry}:${ids.join(",")}`;
    let c = this.cache.get(key);
    if (!c) {
      const params = this.k.uniform(new Array(12).fill(0));
      const wg = groupsFor(entry === "err_norm" ? ins[0].length : out.length);
      const wgsl = code(entry === "err_norm" ? 0 : ins.length);
      c = { dispatch: this.k.dispatch(wgsl, entry, [params, ...ins, out], wg), params, ids };
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
    const { cout, hasOut, cs, vs } = normaliseTerms(out, coeffs, vecs);
    for (const v of vs) if (v.length !== out.length) throw new Error("lincomb: lengths differ");
    const c = this.get("lincomb", vs, out);
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
    const g = grid(groupsFor(n)); // every workgroup of the (possibly padded) 2D grid writes one
    const total = g[0] * g[1];
    let part = this.partials.get(total);
    if (!part) {
      part = this.k.tensor([total], "err_norm partials");
      this.partials.set(total, part);
    }
    const c = this.get("err_norm", [err, x, y], part);
    this.run(c, n, false, 0, [atol, rtol], []);
    const sums = await this.k.read(part);
    let s = 0;
    for (let i = 0; i < total; i++) s += sums[i];
    return Math.sqrt(s / Math.max(1, n));
  }
}
