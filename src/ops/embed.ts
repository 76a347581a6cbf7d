/**
 * Conditioning embeddings: DiT's sinusoidal timestep features (t is data: no backward), the
 * class-label table gather and its deterministic backward, and c = temb + yemb.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import source from "../../shaders/embed.wgsl" with { type: "text" };

/** Width of the timestep frequency features (DiT's frequency_embedding_size). */
export const FREQUENCY_EMBEDDING_SIZE = 256;
/** Frequencies per half (cos half, sin half) of the timestep features. */
const HALF = FREQUENCY_EMBEDDING_SIZE / 2;

const code = shader(source, { HALF });

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
  const out = new Float32Array(HALF * 4);
  for (let i = 0; i < HALF; i++) {
    const f = Math.exp(-Math.log(10000) * i / HALF);
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
    t = k.tensor([HALF, 4], `timestep table ${tScale}`);
    k.write(t, timestepTable(tScale));
    m.set(tScale, t);
  }
  return t;
}

/**
 * out [B, 256] = [cos(tScale·t·f), sin(tScale·t·f)] with f_i = exp(−ln(10000)·i/128), i < 128
 * (DiT's timestep_embedding, cos first; 256 = FREQUENCY_EMBEDDING_SIZE).
 */
export function timestepEmbeddingForward(
  k: Kernels,
  t: Tensor,
  out: Tensor,
  tScale: number,
): Dispatch[] {
  const B = t.length;
  if (out.length !== B * FREQUENCY_EMBEDDING_SIZE) {
    throw new Error(
      `timestepEmbedding: out has ${out.length} elements, want ${B}x${FREQUENCY_EMBEDDING_SIZE}`,
    );
  }
  const n = out.length;
  const u = k.uniform([n, B, HALF, 0, 0]);
  return [k.dispatch(code, "timestep_fwd", [u, t, table(k, tScale), out], groupsFor(n))];
}

/** out [B, D] = table [K+1, D] rows `labels` (u32 [B]); a label out of range gives zeros. */
export function labelEmbedForward(
  k: Kernels,
  table: Tensor,
  labels: Tensor,
  out: Tensor,
): Dispatch[] {
  const B = labels.length, D = out.length / B, R = table.length / D;
  if (!Number.isInteger(D) || !Number.isInteger(R)) {
    throw new Error(`labelEmbed: out ${out.length} / table ${table.length} are not [B,D] / [R,D]`);
  }
  const n = out.length;
  const u = k.uniform([n, B, D, R, 0]);
  return [k.dispatch(code, "label_fwd", [u, table, labels, out], groupsFor(n))];
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
): Dispatch[] {
  const B = labels.length, D = dout.length / B, R = dtable.length / D;
  if (!Number.isInteger(D) || !Number.isInteger(R)) {
    throw new Error(`labelEmbed backward: dout ${dout.length} / dtable ${dtable.length} mismatch`);
  }
  const n = dtable.length;
  const u = k.uniform([n, B, D, R, opts.accumulate ? 1 : 0]);
  return [k.dispatch(code, "label_bwd", [u, dout, labels, dtable], groupsFor(n))];
}

/** out = a + b elementwise (c = temb + yemb); its backward passes dout to both. */
export function addForward(k: Kernels, a: Tensor, b: Tensor, out: Tensor): Dispatch[] {
  const n = sameLength("add", a, b, out);
  return [k.dispatch(code, "add_fwd", [k.uniform([n, 0, 0, 0, 0]), a, b, out], groupsFor(n))];
}
