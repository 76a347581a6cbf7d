/**
 * Multi-head self-attention (timm/DiT layout), forward and backward, flash-style: the T×T
 * probabilities are recomputed in the backward from the saved row logsumexps.
 *   qkv [B, T, 3·D], last axis (3, heads, dh): q = qkv[b,t,h·dh+j], k at D+…, v at 2·D+…
 *   out [B, T, D]: out[b,t,h·dh+j] = Σ_s softmax_s(q·k_s/√dh)·v_s[j]
 *   aux [2, B, heads, T] (`attentionAuxShape`), f32: aux[0] = natural logsumexp of each query
 *   row's scaled scores (forward); aux[1] = D_i = Σ_j dout·out per row (written by the dQ kernel,
 *   read by the dK/dV kernel).
 *
 * One forward dispatch and two backward ones (shaders/attention.wgsl): the forward and dQ
 * (which also stores D_i) are query-major, dK and dV come from one key-major kernel that
 * recomputes P once. The forward and dQ exist in two forms, chosen per tile setting:
 * register-blocked (each thread a small block of two matrix products per tile, P or dS passing
 * through workgroup memory) or row-wise (`rowwise`: one thread per query row, its q, dO and output
 * row in registers, K/V rows broadcast; f32 only). dK/dV is always register-blocked. No atomics;
 * every sum in a fixed order. Shapes (T, heads, dh) are compiled into the kernels.
 *
 * f16: when qkv is an f16 tensor, out and dqkv must be f16 too and dout may be f16 or f32. Tiles
 * are stored in f16 and products run on vec4<f16>; each f16 accumulator takes at most `chunk`
 * products (`f16Chunk`, else the tile's `chunk`, else 16) before it is added into an f32 one;
 * softmax statistics, D_i and every accumulation across chunks are f32.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { type AttentionLayout, type AttentionOptions, pickLayout } from "./attention_layout.ts";
import { kernelCode, type Setup } from "./attention_code.ts";

export {
  ATTENTION_DEFAULTS,
  type AttentionLayout,
  attentionLayout,
  type AttentionOptions,
  type AttentionTiles,
} from "./attention_layout.ts";

/** Shape of the tensor `attentionForward` saves for `attentionBackward` (always f32). */
export function attentionAuxShape(B: number, T: number, _D: number, heads: number): number[] {
  return [2, B, heads, T];
}

function setup(name: string, qkv: Tensor, aux: Tensor, heads: number, o: AttentionOptions): Setup {
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
  if (aux.length !== auxLen || aux.dtype === "f16") {
    throw new Error(`${name}: aux must be an f32 tensor [${attentionAuxShape(B, T, D, heads)}]`);
  }
  const chunk = o.f16Chunk;
  if (chunk !== undefined && !(Number.isInteger(chunk) && chunk > 0)) {
    throw new Error(`${name}: f16Chunk must be a positive integer, got ${chunk}`);
  }
  return { B, T, D, heads, dh, f16: qkv.dtype === "f16" };
}

function checkTensor(name: string, t: Tensor, shape: number[], what: string, f16: boolean) {
  if (t.length !== shape.reduce((a, b) => a * b, 1)) {
    throw new Error(`${name}: ${what} must be [${shape}], got [${t.shape}]`);
  }
  if ((t.dtype === "f16") !== f16) {
    throw new Error(`${name}: ${what} must be ${f16 ? "f16" : "f32"} like qkv`);
  }
}

function record(
  k: Kernels,
  s: Setup,
  l: AttentionLayout,
  doutF16: boolean,
  chunk: number | undefined,
  tensors: Tensor[],
): Dispatch {
  const { code, entry, nblk } = kernelCode(l, s, doutF16, chunk);
  const total = s.B * s.heads * nblk;
  const u = k.uniform([total, s.B * s.heads * s.T]);
  return k.dispatch(code, entry, [u, ...tensors], total);
}

const wgLimit = (k: Kernels) => k.device.limits.maxComputeWorkgroupStorageSize;

/** out [B, T, D] = attention(qkv [B, T, 3·D]); aux [2, B, heads, T] saved for the backward. */
export function attentionForward(
  k: Kernels,
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  heads: number,
  opts: AttentionOptions = {},
): Dispatch[] {
  const name = "attentionForward";
  const s = setup(name, qkv, aux, heads, opts);
  checkTensor(name, out, [s.B, s.T, s.D], "out", s.f16);
  const l = pickLayout("fwd", opts.fwd, s.dh, s.f16, wgLimit(k));
  return [record(k, s, l, false, opts.f16Chunk, [qkv, out, aux])];
}

/**
 * dqkv [B, T, 3·D] (every element written) from dout [B, T, D], the forward's qkv, out and aux.
 * Two dispatches: dQ (also stores D_i = Σ dout·out in aux[1]), then dK and dV together.
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
  const s = setup(name, qkv, aux, heads, opts);
  checkTensor(name, out, [s.B, s.T, s.D], "out", s.f16);
  checkTensor(name, dqkv, [s.B, s.T, 3 * s.D], "dqkv", s.f16);
  const doutF16 = dout.dtype === "f16";
  checkTensor(name, dout, [s.B, s.T, s.D], "dout", doutF16);
  if (doutF16 && !s.f16) throw new Error(`${name}: an f16 dout needs f16 qkv, out and dqkv`);
  const lq = pickLayout("dq", opts.dq, s.dh, s.f16, wgLimit(k));
  const lk = pickLayout("dkv", opts.dkv, s.dh, s.f16, wgLimit(k));
  return [
    record(k, s, lq, doutF16, opts.f16Chunk, [qkv, dout, out, aux, dqkv]),
    record(k, s, lk, doutF16, opts.f16Chunk, [qkv, dout, aux, dqkv]),
  ];
}
