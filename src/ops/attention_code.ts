/**
 * The WGSL of one attention kernel: shaders/attention.wgsl expanded (attention_template.ts) with
 * the constants of a tile layout and of the shapes, cached per set of constants.
 */
import template from "../../shaders/attention.wgsl" with { type: "text" };
import type { AttentionLayout } from "./attention_layout.ts";
import { expandTemplate } from "./attention_template.ts";

/** The shapes of one call (qkv [B, T, 3·D], heads of dh) and its precision. */
export interface Setup {
  B: number;
  T: number;
  D: number;
  heads: number;
  dh: number;
  f16: boolean;
}

const ENTRY = {
  fwd: ["attn_fwd", "attn_fwd_row"],
  dq: ["attn_bwd_dq", "attn_bwd_dq_row"],
  dkv: ["attn_bwd_dkv", "attn_bwd_dkv"],
};
// Workgroup arrays per kernel: streamed tile (B0, B1), owned transposed blocks (O0, O1), phase-1
// operands (X0, X1 streamed; Y0, Y1 owned).
const NAMES: Record<string, Record<string, string>> = {
  fwd: { B0: "kp", B1: "vr", O0: "qt", O1: "qt", X0: "kp", X1: "kp", Y0: "qt", Y1: "qt" },
  dq: { B0: "kr", B1: "vp", O0: "qt", O1: "gt", X0: "kr", X1: "vp", Y0: "qt", Y1: "gt" },
  dkv: { B0: "qr", B1: "gr", O0: "kt", O1: "vt", X0: "qr", X1: "gr", Y0: "kt", Y1: "vt" },
  row: { B0: "ta", B1: "tb" },
};

const codeCache = new Map<string, string>();

/** The kernel's WGSL, its entry point and its workgroup count per (b, h). */
export function kernelCode(
  l: AttentionLayout,
  s: Setup,
  doutF16: boolean,
  chunkOpt: number | undefined,
): { code: string; entry: string; nblk: number } {
  const { kernel, tiles } = l;
  const own = Number(l.consts.OWN), tile = Number(l.consts.TILE);
  const nblk = Math.ceil(s.T / own);
  const chunk = chunkOpt ?? tiles.chunk ?? 16;
  const consts: Record<string, number | string | boolean> = {
    ...l.consts,
    ...NAMES[tiles.rowwise ? "row" : kernel],
    KERNEL: tiles.rowwise ? (kernel === "fwd" ? 3 : 4) : ["fwd", "dq", "dkv"].indexOf(kernel),
    TWO: kernel !== "fwd",
    DS: tiles.share ? "vp" : "dt",
    PF: tiles.prefetch,
    F16: s.f16,
    ET: s.f16 ? "f16" : "f32",
    OT: doutF16 ? "f16" : "f32",
    T: s.T,
    T1: s.T - 1,
    H: s.heads,
    D4: s.D / 4,
    RS: (3 * s.D) / 4,
    NBLK: nblk,
    NFULL: Math.floor(s.T / tile),
    TAIL: s.T % tile,
    QS: String(Math.LOG2E / Math.sqrt(s.dh)),
    SCALE: String(1 / Math.sqrt(s.dh)),
    // f16 accumulators: flush every FLD d4 steps (phase 1) and every FLK keys/rows (phase 2).
    FLD: Math.max(1, Math.floor(chunk / 4)),
    FLK: chunk,
    ACC: s.f16 ? "g" : "o",
    ACV: s.f16 ? "y" : "u",
  };
  const key = JSON.stringify(consts);
  let code = codeCache.get(key);
  if (!code) {
    code = expandTemplate(template, consts);
    codeCache.set(key, code);
  }
  return { code, entry: ENTRY[kernel][tiles.rowwise ? 1 : 0], nblk };
}
