/**
 * Gated residual of a DiT block, forward and backward: out = x + gate[b,:]·y where gate is chunk
 * `gateChunk` of the modulation tensor mod [B, nChunks·D] (columns gateChunk·D .. +D−1).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import source from "../../shaders/residual.wgsl" with { type: "text" };

const code = shader(source);

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
  const { n, u } = params("gateResidual", k, y, mod, gateChunk);
  return [k.dispatch(code, "gate_fwd", [u, x, y, mod, out], groupsFor(n))];
}

/**
 * Backward of `gateResidualForward`: dy = gate·dout, and the gate chunk columns of dmod
 * (Σ_t dout·y) are written; other columns of dmod are untouched. dx is dout itself (no kernel).
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
  const { n, wgDmod, u } = params("gateResidualBackward", k, y, mod, gateChunk);
  return [
    k.dispatch(code, "gate_bwd_dy", [u, dout, mod, dy], groupsFor(n)),
    k.dispatch(code, "gate_bwd_dmod", [u, dout, y, dmod], wgDmod),
  ];
}
