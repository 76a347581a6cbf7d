/**
 * Gated residual of a DiT block, forward and backward: out = x + gate[b,:]·y where gate is chunk
 * `gateChunk` of the modulation tensor mod [B, nChunks·D] (columns gateChunk·D .. +D−1).
 * (The model fuses the forward into the branch GEMM's epilogue: linearForward's `gate`.)
 *
 * Mixed precision: y (the saved branch output) and dy (the branch GEMM's operand) may be f16;
 * x, out, dout, mod and dmod are f32, and every sum is.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import source from "../../shaders/residual.wgsl" with { type: "text" };

const variants = new Map<string, string>();
/** The shader with y and dy of the given element types. */
function code(k: Kernels, name: string, y: Tensor, dy?: Tensor): string {
  const yt = y.dtype === "f16" ? "f16" : "f32", dyt = dy?.dtype === "f16" ? "f16" : "f32";
  const f16 = yt === "f16" || dyt === "f16";
  if (f16 && !k.gpu.features.has("shader-f16")) {
    throw new Error(`${name}: f16 tensors need the adapter feature shader-f16`);
  }
  let c = variants.get(yt + dyt);
  if (!c) {
    c = shader(source, { ENABLE: f16 ? "enable f16;" : "", Y: yt, DY: dyt });
    variants.set(yt + dyt, c);
  }
  return c;
}

function f32Only(name: string, ts: Record<string, Tensor>): void {
  for (const [what, t] of Object.entries(ts)) {
    if (t.dtype === "f16") throw new Error(`${name}: ${what} must be f32, got f16`);
  }
}

function params(name: string, k: Kernels, y: Tensor, mod: Tensor, gateChunk: number) {
  if (y.shape.length !== 3) throw new Error(`${name}: y must be [B, T, D], got [${y.shape}]`);
  const [B, T, D] = y.shape;
  if (mod.length % (B * D) !== 0) {
    throw new Error(`${name}: mod of ${mod.length} elements is not [B=${B}, nChunks·D=${D}·k]`);
  }
  const nChunks = mod.length / (B * D);
  if (!Number.isInteger(gateChunk) || gateChunk < 0 || gateChunk >= nChunks) {
    throw new Error(`${name}: gate chunk ${gateChunk} out of range 0..${nChunks - 1}`);
  }
  const dGroups = Math.ceil(D / 64);
  const u = k.uniform([B * T * D, T, D, nChunks * D, gateChunk * D, dGroups, B * dGroups]);
  return { n: B * T * D, wgDmod: B * dGroups, u };
}

/** out = x + mod[:, gateChunk]·y; x, y, out [B, T, D]. */
export function gateResidualForward(
  k: Kernels,
  x: Tensor,
  y: Tensor,
  mod: Tensor,
  gateChunk: number,
  out: Tensor,
): Dispatch[] {
  sameLength("gateResidual", y, x, out);
  f32Only("gateResidual", { x, mod, out });
  const { n, u } = params("gateResidual", k, y, mod, gateChunk);
  return [k.dispatch(code(k, "gateResidual", y), "gate_fwd", [u, x, y, mod, out], groupsFor(n))];
}

/**
 * Backward of `gateResidualForward`: dy = gate·dout, and the gate chunk columns of dmod
 * (Σ_t dout·y) are written; other columns of dmod are untouched. dx is dout itself (no kernel).
 * One dispatch reading dout once.
 */
export function gateResidualBackward(
  k: Kernels,
  y: Tensor,
  mod: Tensor,
  gateChunk: number,
  dout: Tensor,
  dy: Tensor,
  dmod: Tensor,
): Dispatch[] {
  sameLength("gateResidualBackward", y, dout, dy);
  sameLength("gateResidualBackward", mod, dmod);
  f32Only("gateResidualBackward", { mod, dout, dmod });
  const { wgDmod, u } = params("gateResidualBackward", k, y, mod, gateChunk);
  const c = code(k, "gateResidualBackward", y, dy);
  return [k.dispatch(c, "gate_bwd", [u, dout, y, mod, dy, dmod], wgDmod)];
}
