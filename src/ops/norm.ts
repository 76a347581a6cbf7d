/**
 * LayerNorm (no affine, biased variance, eps 1e-6) fused with adaLN modulate, forward and
 * backward: y[b,t,:] = x̂·(1 + scale[b,:]) + shift[b,:] where shift and scale are chunks of a
 * modulation tensor mod [B, nChunks·D] (chunk i is columns i·D .. i·D+D−1).
 *
 * Mixed precision: y (forward) and dy (backward) may be f16 tensors (the GEMM operand written
 * once rounded, the dX GEMM's f16 output read); x, mod, stats, dx and dmod are f32, and so are
 * the statistics and every sum.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { sameLength, shader, WORKGROUP_SIZE } from "./common.ts";
import source from "../../shaders/norm.wgsl" with { type: "text" };

/** Threads per row (a row team); WORKGROUP_SIZE / TEAM rows per workgroup. */
const TEAM = 32;

const variants = new Map<string, string>();
/**
 * The shader with y and dy of the given element types (f16 enables the extension), its
 * per-thread register count specialised for rows of D.
 */
function code(k: Kernels, y: "f32" | "f16", dy: "f32" | "f16", D: number): string {
  if ((y === "f16" || dy === "f16") && !k.gpu.features.has("shader-f16")) {
    throw new Error("layerNormModulate: f16 tensors need the adapter feature shader-f16");
  }
  const NE = Math.ceil(D / TEAM);
  const key = `${y}${dy}${NE}`;
  let c = variants.get(key);
  if (!c) {
    const f16 = y === "f16" || dy === "f16";
    c = shader(source, { ENABLE: f16 ? "enable f16;" : "", Y: y, DY: dy, TEAM, NE });
    variants.set(key, c);
  }
  return c;
}

/** Workgroups of the row kernels (forward, dx): one per WORKGROUP_SIZE / TEAM rows. */
const rowGroups = (d: Dims) => Math.ceil(d.B * d.T / (WORKGROUP_SIZE / TEAM));

const dt = (t: Tensor) => (t.dtype === "f16" ? "f16" : "f32");

/** Each of `ts` must be an f32 tensor. */
function f32Only(name: string, ts: Record<string, Tensor>): void {
  for (const [what, t] of Object.entries(ts)) {
    if (t.dtype === "f16") throw new Error(`${name}: ${what} must be f32, got f16`);
  }
}

export const LN_EPS = 1e-6;

interface Dims {
  B: number;
  T: number;
  D: number;
  nChunks: number;
}

function dims(name: string, x: Tensor, mod: Tensor, chunks: number[]): Dims {
  if (x.shape.length !== 3) throw new Error(`${name}: x must be [B, T, D], got [${x.shape}]`);
  const [B, T, D] = x.shape;
  if (mod.length % (B * D) !== 0) {
    throw new Error(`${name}: mod of ${mod.length} elements is not [B=${B}, nChunks·D=${D}·k]`);
  }
  const nChunks = mod.length / (B * D);
  for (const c of chunks) {
    if (!Number.isInteger(c) || c < 0 || c >= nChunks) {
      throw new Error(`${name}: chunk ${c} out of range 0..${nChunks - 1}`);
    }
  }
  return { B, T, D, nChunks };
}

function uniform(
  k: Kernels,
  d: Dims,
  shiftChunk: number,
  scaleChunk: number,
  acc: boolean,
): GPUBuffer {
  const dGroups = Math.ceil(d.D / 64);
  return k.uniform([
    d.B * d.T,
    d.T,
    d.D,
    d.nChunks * d.D,
    shiftChunk * d.D,
    scaleChunk * d.D,
    acc ? 1 : 0,
    dGroups,
    d.B * dGroups,
    f32(LN_EPS),
  ]);
}

/**
 * y = LN(x)·(1 + mod[:, scaleChunk]) + mod[:, shiftChunk]; x, y [B, T, D]; mod [B, nChunks·D];
 * stats [B·T·2] receives each row's mean and rstd for the backward.
 */
export function layerNormModulateForward(
  k: Kernels,
  x: Tensor,
  mod: Tensor,
  shiftChunk: number,
  scaleChunk: number,
  y: Tensor,
  stats: Tensor,
): Dispatch[] {
  const d = dims("layerNormModulate", x, mod, [shiftChunk, scaleChunk]);
  sameLength("layerNormModulate", x, y);
  if (stats.length !== d.B * d.T * 2) throw new Error("layerNormModulate: stats must be [B·T·2]");
  f32Only("layerNormModulate", { x, mod, stats });
  const u = uniform(k, d, shiftChunk, scaleChunk, false);
  return [
    k.dispatch(code(k, dt(y), "f32", d.D), "ln_mod_fwd", [u, x, mod, y, stats], rowGroups(d)),
  ];
}

/**
 * Backward of `layerNormModulateForward`: writes dx (adds into it with `accumulate`) and writes
 * only the shift and scale chunk columns of dmod (dshift = Σ_t dy, dscale = Σ_t dy·x̂); the other
 * columns of dmod are left untouched.
 */
export function layerNormModulateBackward(
  k: Kernels,
  x: Tensor,
  mod: Tensor,
  shiftChunk: number,
  scaleChunk: number,
  stats: Tensor,
  dy: Tensor,
  dx: Tensor,
  dmod: Tensor,
  opts: { accumulate?: boolean } = {},
): Dispatch[] {
  const d = dims("layerNormModulateBackward", x, mod, [shiftChunk, scaleChunk]);
  sameLength("layerNormModulateBackward", x, dy, dx);
  sameLength("layerNormModulateBackward", mod, dmod);
  if (shiftChunk === scaleChunk) throw new Error("layerNormModulateBackward: shift = scale chunk");
  f32Only("layerNormModulateBackward", { x, mod, stats, dx, dmod });
  const u = uniform(k, d, shiftChunk, scaleChunk, opts.accumulate ?? false);
  const c = code(k, "f32", dt(dy), d.D);
  return [
    k.dispatch(c, "ln_mod_bwd_dx", [u, x, stats, dy, mod, dx], rowGroups(d)),
    k.dispatch(c, "ln_mod_bwd_dmod", [u, x, stats, dy, dmod], d.B * Math.ceil(d.D / 64)),
  ];
}
