/**
 * Conditioning embeddings: DiT's sinusoidal timestep features (and their derivative w.r.t. t),
 * the class-label table gather and its deterministic backward, and c = temb + yemb.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import code from "../../shaders/embed.wgsl" with { type: "text" };

/** Frequencies per half of the 256-wide timestep feature. */
export const TIMESTEP_HALF = 128;
export const TIMESTEP_DIM = 2 * TIMESTEP_HALF;

const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);
/** x rounded to f32 and truncated to its 12 leading significant bits (exact in f32). */
function top12(x: number): number {
  f32buf[0] = x;
  u32buf[0] &= 0xfffff000;
  return f32buf[0];
}

/**
 * Per frequency i: (G_hi, G_mid, G_lo, w) with G = tScale·f_i/(2π) turns per unit t split into
 * f32 parts (G_hi, G_mid with 12 significant bits) and w = tScale·f_i; f_i = 10000^(−i/128).
 */
export function timestepTable(tScale: number): Float32Array {
  const out = new Float32Array(TIMESTEP_HALF * 4);
  for (let i = 0; i < TIMESTEP_HALF; i++) {
    const f = Math.exp(-Math.log(10000) * i / TIMESTEP_HALF);
    const G = tScale * f / (2 * Math.PI);
    const hi = top12(G);
    const mid = top12(G - hi);
    out.set([hi, mid, Math.fround(G - hi - mid), Math.fround(tScale * f)], 4 * i);
  }
  return out;
}

const tables = new WeakMap<Kernels, Map<number, Tensor>>();
function table(k: Kernels, tScale: number): Tensor {
  let m = tables.get(k);
  if (!m) tables.set(k, m = new Map());
  let t = m.get(tScale);
  if (!t) {
    t = k.tensor([TIMESTEP_HALF, 4], `timestep table ${tScale}`);
    k.write(t, timestepTable(tScale));
    m.set(tScale, t);
  }
  return t;
}

/**
 * out [B, 256] = [cos(tScale·t·f), sin(tScale·t·f)] with f_i = exp(−ln(10000)·i/128), i < 128
 * (DiT's timestep_embedding, cos first).
 */
export function timestepEmbeddingForward(
  k: Kernels,
  t: Tensor,
  out: Tensor,
  tScale: number,
): Dispatch {
  const B = t.length;
  if (out.length !== B * TIMESTEP_DIM) {
    throw new Error(`timestepEmbedding: out has ${out.length} elements, want ${B}x256`);
  }
  const n = out.length;
  return k.dispatch(
    code,
    "timestep_fwd",
    [t, table(k, tScale), out, k.uniform([n, B, TIMESTEP_HALF, 0, 0])],
    Math.ceil(n / 256),
  );
}

/** dt [B] = Σ_j dout[b, j]·d out[b, j]/dt (written, one thread per sample, j in order). */
export function timestepEmbeddingBackward(
  k: Kernels,
  t: Tensor,
  dout: Tensor,
  dt: Tensor,
  tScale: number,
): Dispatch {
  const B = t.length;
  if (dout.length !== B * TIMESTEP_DIM || dt.length !== B) {
    throw new Error(`timestepEmbedding backward: want dout [${B},256] and dt [${B}]`);
  }
  return k.dispatch(
    code,
    "timestep_bwd",
    [t, table(k, tScale), dt, k.uniform([B, B, TIMESTEP_HALF, 0, 0]), dout],
    Math.ceil(B / 64),
  );
}

/** out [B, D] = table [K+1, D] rows `labels` (u32 [B]); a label out of range gives zeros. */
export function labelEmbedForward(
  k: Kernels,
  table: Tensor,
  labels: Tensor,
  out: Tensor,
): Dispatch {
  const B = labels.length, D = out.length / B, R = table.length / D;
  if (!Number.isInteger(D) || !Number.isInteger(R)) {
    throw new Error(`labelEmbed: out ${out.length} / table ${table.length} are not [B,D] / [R,D]`);
  }
  const n = out.length;
  return k.dispatch(
    code,
    "label_fwd",
    [table, labels, out, k.uniform([n, B, D, R, 0])],
    Math.ceil(n / 256),
  );
}

/**
 * dtable [K+1, D] = Σ_{b: labels[b] = r} dout[b] in increasing b (one thread per (r, d));
 * rows no label selects get 0, or stay unchanged with `accumulate` (+=).
 */
export function labelEmbedBackward(
  k: Kernels,
  labels: Tensor,
  dout: Tensor,
  dtable: Tensor,
  opts: { accumulate?: boolean } = {},
): Dispatch {
  const B = labels.length, D = dout.length / B, R = dtable.length / D;
  if (!Number.isInteger(D) || !Number.isInteger(R)) {
    throw new Error(`labelEmbed backward: dout ${dout.length} / dtable ${dtable.length} mismatch`);
  }
  const n = dtable.length;
  return k.dispatch(
    code,
    "label_bwd",
    [dout, labels, dtable, k.uniform([n, B, D, R, opts.accumulate ? 1 : 0])],
    Math.ceil(n / 256),
  );
}

/** out = a + b elementwise (c = temb + yemb); its backward passes dout to both. */
export function addForward(k: Kernels, a: Tensor, b: Tensor, out: Tensor): Dispatch {
  const n = out.length;
  if (a.length !== n || b.length !== n) throw new Error("add: tensor lengths differ");
  return k.dispatch(code, "add_fwd", [a, b, out, k.uniform([n, 0, 0, 0, 0])], Math.ceil(n / 256));
}
