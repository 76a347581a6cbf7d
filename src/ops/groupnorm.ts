/**
 * GroupNorm (PyTorch nn.GroupNorm(G, C, eps) with affine weight γ and bias β) over NHWC
 * activations x [B, H, W, C] (or any [B, …, C]), forward and backward (shaders/groupnorm.wgsl).
 * Statistics per (sample, group) over the spatial positions and the group's C/G channels.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import source from "../../shaders/groupnorm.wgsl" with { type: "text" };
import { groupsFor, shader } from "./common.ts";

const code = shader(source);

/** The VQ-VAE's epsilon (taming-transformers' Normalize uses 1e-6). */
export const GN_EPS = 1e-6;

interface Dims {
  B: number;
  S: number;
  C: number;
  G: number;
}

function dims(name: string, x: Tensor, gamma: Tensor, groups: number): Dims {
  if (x.shape.length < 2) throw new Error(`${name}: x must be [B, …, C], got [${x.shape}]`);
  const B = x.shape[0], C = x.shape[x.shape.length - 1];
  const S = x.length / (B * C);
  if (!Number.isInteger(groups) || groups < 1 || C % groups !== 0) {
    throw new Error(`${name}: ${C} channels do not split into ${groups} groups`);
  }
  if (gamma.length !== C) throw new Error(`${name}: γ has ${gamma.length} elements, C = ${C}`);
  return { B, S, C, G: groups };
}

/** Rows per chunk of the parameter-gradient partial sums (fixed by the row count alone). */
function chunkRows(rows: number): number {
  return Math.max(16, Math.ceil(Math.sqrt(rows)));
}

function uniform(k: Kernels, d: Dims, acc: boolean, eps: number): GPUBuffer {
  const rows = chunkRows(d.B * d.S);
  return k.uniform([
    d.B,
    d.S,
    d.C,
    d.G,
    d.C / d.G,
    acc ? 1 : 0,
    rows,
    Math.ceil(d.B * d.S / rows),
    f32(eps),
  ]);
}

/** Length of the stats tensor (mean, rstd per sample and group): B·G·2. */
export function groupNormStatsLength(B: number, groups: number): number {
  return B * groups * 2;
}

/** y = GroupNorm(x)·γ + β; stats [B·G·2] receives (mean, rstd) for the backward. */
export function groupNormForward(
  k: Kernels,
  x: Tensor,
  gamma: Tensor,
  beta: Tensor,
  y: Tensor,
  stats: Tensor,
  groups: number,
  eps = GN_EPS,
): Dispatch[] {
  const d = dims("groupNorm", x, gamma, groups);
  if (y.length !== x.length || beta.length !== d.C) {
    throw new Error("groupNorm: y must match x, β must have C elements");
  }
  if (stats.length !== d.B * d.G * 2) throw new Error("groupNorm: stats must be [B·G·2]");
  const u = uniform(k, d, false, eps);
  return [k.dispatch(code, "gn_fwd", [u, x, gamma, beta, y, stats], d.B * d.G)];
}

/**
 * Backward of groupNormForward: dx (written, or added into with `accumulate`), and dγ, dβ
 * (written; null to skip both). Uses the forward's stats.
 */
export function groupNormBackward(
  k: Kernels,
  x: Tensor,
  gamma: Tensor,
  stats: Tensor,
  dy: Tensor,
  dx: Tensor | null,
  dgamma: Tensor | null,
  dbeta: Tensor | null,
  groups: number,
  opts: { accumulate?: boolean; eps?: number } = {},
): Dispatch[] {
  const d = dims("groupNorm backward", x, gamma, groups);
  if (dy.length !== x.length || (dx && dx.length !== x.length)) {
    throw new Error("groupNorm backward: dy and dx must match x");
  }
  if ((dgamma === null) !== (dbeta === null)) {
    throw new Error("groupNorm backward: give both dγ and dβ, or neither");
  }
  const u = uniform(k, d, opts.accumulate ?? false, opts.eps ?? GN_EPS);
  const out: Dispatch[] = [];
  if (dx) out.push(k.dispatch(code, "gn_bwd_dx", [u, x, gamma, stats, dy, dx], d.B * d.G));
  if (dgamma && dbeta) {
    if (dgamma.length !== d.C || dbeta.length !== d.C) {
      throw new Error("groupNorm backward: dγ and dβ must have C elements");
    }
    const rows = chunkRows(d.B * d.S), chunks = Math.ceil(d.B * d.S / rows);
    const part = k.tensor([chunks * d.C * 2], "groupnorm param partials");
    out.push(
      k.dispatch(code, "gn_bwd_param_part", [u, x, stats, dy, part], groupsFor(chunks * d.C)),
      k.dispatch(code, "gn_bwd_param_final", [u, part, dgamma, dbeta], groupsFor(d.C)),
    );
  }
  return out;
}
