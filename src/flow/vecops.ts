/**
 * The vector operations the ODE solvers and guidance use, and their CPU implementation. Solvers
 * see only this interface, so the same code runs on Float32Arrays (`CpuVecOps`) and on GPU
 * tensors (`GpuVecOps` in src/ops/vecops.ts, which reads back only in `errorNorm`).
 */

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
export function normaliseTerms<V>(out: V, coeffs: number[], vecs: V[]) {
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
    const { cout, hasOut, cs, vs } = normaliseTerms(out, coeffs, vecs);
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
