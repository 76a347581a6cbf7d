/**
 * Multi-head self-attention (timm/DiT layout), forward and backward, flash-style: the T×T
 * probabilities are recomputed in the backward from the saved row logsumexps.
 *   qkv [B, T, 3·D], last axis (3, heads, dh): q = qkv[b,t,h·dh+j], k at D+…, v at 2·D+…
 *   out [B, T, D]: out[b,t,h·dh+j] = Σ_s softmax_s(q·k_s/√dh)·v_s[j]
 *   aux [2, B, heads, T] (`attentionAuxShape`): aux[0] = natural logsumexp of each query row's
 *   scaled scores (forward); aux[1] = Σ_j dout·out per row (scratch of the backward).
 */
import { type Dispatch, f32, type Kernels, specialise, type Tensor } from "../gpu/kernels.ts";
import template from "../../shaders/attention.wgsl" with { type: "text" };

/** Shape of the tensor `attentionForward` saves for `attentionBackward`. */
export function attentionAuxShape(B: number, T: number, _D: number, heads: number): number[] {
  return [2, B, heads, T];
}

/** Block sizes (tests use small ones to span several blocks with tiny shapes). */
export interface AttentionOptions {
  /** Rows (threads) per workgroup; default 64. */
  blockRows?: number;
  /**
   * Rows per tile of workgroup memory; default min(64, 1024/dh) (K+V tiles ≤ 8 KB, at
   * most half the device's workgroup memory).
   */
  tileRows?: number;
}

/**
 * Expand the template's unrolled lines (`… // unroll`, `$` = 0..n−1) and `sum$(e)` (balanced
 * sum of e over `$`).
 */
export function unrollDh(src: string, n: number): string {
  const idx = Array.from({ length: n }, (_, j) => j);
  const lines = src.split("\n").flatMap((line) => {
    const m = line.match(/^(.*?)\s*\/\/ unroll$/);
    return m ? idx.map((j) => m[1].replaceAll("$", String(j))) : [line];
  });
  let out = lines.join("\n");
  for (let at = out.indexOf("sum$("); at >= 0; at = out.indexOf("sum$(")) {
    let depth = 0, end = at + 4;
    for (; end < out.length; end++) {
      if (out[end] === "(") depth++;
      else if (out[end] === ")" && --depth === 0) break;
    }
    const expr = out.slice(at + 5, end);
    const tree = (terms: string[]): string =>
      terms.length === 1
        ? terms[0]
        : `(${tree(terms.slice(0, terms.length >> 1))} + ${tree(terms.slice(terms.length >> 1))})`;
    out = out.slice(0, at) + tree(idx.map((j) => expr.replaceAll("$", String(j)))) +
      out.slice(end + 1);
  }
  return out;
}

const codeCache = new Map<string, string>();
function shader(dh: number, bq: number, bk: number): string {
  const key = `${dh}/${bq}/${bk}`;
  let c = codeCache.get(key);
  if (!c) {
    c = specialise(unrollDh(template, dh / 4), { DH4: dh / 4, BQ: bq, BK: bk });
    codeCache.set(key, c);
  }
  return c;
}

function setup(
  name: string,
  k: Kernels,
  qkv: Tensor,
  aux: Tensor,
  heads: number,
  o: AttentionOptions,
) {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new Error(`${name}: qkv must be [B, T, 3·D], got [${qkv.shape}]`);
  }
  const [B, T] = qkv.shape, D = qkv.shape[2] / 3;
  if (!Number.isInteger(heads) || heads < 1 || D % heads !== 0) {
    throw new Error(`${name}: D=${D} is not divisible by heads=${heads}`);
  }
  const dh = D / heads;
  if (dh % 4 !== 0) throw new Error(`${name}: head dim dh=${dh} must be a multiple of 4`);
  const auxLen = attentionAuxShape(B, T, D, heads).reduce((a, b) => a * b, 1);
  if (aux.length !== auxLen) {
    throw new Error(`${name}: aux must be [${attentionAuxShape(B, T, D, heads)}]`);
  }
  const bq = o.blockRows ?? 64;
  // K and V (or Q and dO) tiles take 2·bk·dh·4 bytes ≤ 8 KB (16 rows at dh=64): on an H100 the
  // 8 KB tiles ran the four kernels 1.35× faster than 16 KB ones (and 25 KB ones 2× slower).
  const wgMem = Math.min(k.device.limits.maxComputeWorkgroupStorageSize, 16384);
  const bk = o.tileRows ?? Math.max(1, Math.min(64, Math.floor(wgMem / 2 / (8 * dh))));
  const nblk = Math.ceil(T / bq), total = B * heads * nblk;
  const u = k.uniform([
    T,
    heads,
    D / 4,
    nblk,
    total,
    B * heads * T,
    f32(Math.LOG2E / Math.sqrt(dh)),
    f32(1 / Math.sqrt(dh)),
  ]);
  return { B, T, D, code: shader(dh, bq, bk), u, total };
}

function checkShape(name: string, t: Tensor, shape: number[], what: string): void {
  if (t.length !== shape.reduce((a, b) => a * b, 1)) {
    throw new Error(`${name}: ${what} must be [${shape}], got [${t.shape}]`);
  }
}

/** out [B, T, D] = attention(qkv [B, T, 3·D]); aux [2, B, heads, T] saved for the backward. */
export function attentionForward(
  k: Kernels,
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  heads: number,
  opts: AttentionOptions = {},
): Dispatch[] {
  const s = setup("attentionForward", k, qkv, aux, heads, opts);
  checkShape("attentionForward", out, [s.B, s.T, s.D], "out");
  return [k.dispatch(s.code, "attn_fwd", [qkv, out, aux, s.u], s.total)];
}

/**
 * dqkv [B, T, 3·D] (every element written) from dout [B, T, D], the forward's qkv, out and aux.
 * Three dispatches: dq (also stores Σ dout·out in aux[1]), dk, dv; no atomics.
 */
export function attentionBackward(
  k: Kernels,
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  dout: Tensor,
  dqkv: Tensor,
  heads: number,
  opts: AttentionOptions = {},
): Dispatch[] {
  const name = "attentionBackward";
  const s = setup(name, k, qkv, aux, heads, opts);
  checkShape(name, out, [s.B, s.T, s.D], "out");
  checkShape(name, dout, [s.B, s.T, s.D], "dout");
  checkShape(name, dqkv, [s.B, s.T, 3 * s.D], "dqkv");
  return [
    k.dispatch(s.code, "attn_bwd_dq", [qkv, dqkv, aux, s.u, dout, out], s.total),
    k.dispatch(s.code, "attn_bwd_dk", [qkv, dqkv, aux, s.u, dout], s.total),
    k.dispatch(s.code, "attn_bwd_dv", [qkv, dqkv, aux, s.u, dout], s.total),
  ];
}
