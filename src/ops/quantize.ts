/**
 * The VQ-VAE vector quantizer's kernels (shaders/quantize.wgsl): nearest code by a distance GEMM
 * (linear's z·Eᵀ) and a deterministic argmin, the straight-through gradient with the commitment
 * term, and the EMA codebook update with dead-code restarts.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import source from "../../shaders/quantize.wgsl" with { type: "text" };
import { linearForward, type LinearOptions } from "./linear.ts";
import { groupsFor, shader } from "./common.ts";

const code = shader(source);

/** The codebook and its EMA statistics (tensors of one flat buffer, or separate). */
export interface VqState {
  /** E [K, D]. */
  codebook: Tensor;
  /** EMA cluster sizes N [K]. */
  clusterSize: Tensor;
  /** EMA sums of the assigned encoder outputs m [K, D]. */
  embedAvg: Tensor;
  /** Steps since each code was last used [K]. */
  unused: Tensor;
}

export interface VqEmaOptions {
  /** EMA decay γ (0.99). */
  decay: number;
  /** Laplace smoothing ε of the cluster sizes (default 1e-5). */
  eps?: number;
  /** A code unused for this many steps restarts at a random encoder output; 0 never. */
  deadAfter: number;
}

export const VQ_EPS = 1e-5;

function dims(name: string, z: Tensor, codebook: Tensor): { N: number; D: number; K: number } {
  if (codebook.shape.length !== 2) throw new Error(`${name}: codebook must be [K, D]`);
  const [K, D] = codebook.shape;
  const N = z.length / D;
  if (!Number.isInteger(N) || N < 1) {
    throw new Error(`${name}: z has ${z.length} elements, not rows of the code dimension ${D}`);
  }
  return { N, D, K };
}

function need(name: string, t: Tensor, n: number, what: string): void {
  if (t.length !== n) throw new Error(`${name}: ${what} has ${t.length} elements, want ${n}`);
}

function uniform(
  k: Kernels,
  d: { N: number; D: number; K: number },
  rest: { rows?: number; chunks?: number; dead?: number; decay?: number; eps?: number; c?: number },
): GPUBuffer {
  const decay = rest.decay ?? 0;
  return k.uniform([
    d.N,
    d.D,
    d.K,
    rest.rows ?? 0,
    rest.chunks ?? 0,
    rest.dead ?? 0,
    f32(decay),
    f32(1 - decay),
    f32(rest.eps ?? VQ_EPS),
    f32(rest.c ?? 0),
  ]);
}

/**
 * idx [N] (u32) = the nearest code of each row of z [N, D] (Euclidean; ties to the lowest index)
 * and zq [N, D] = E[idx]. `norms` [K] and `dots` [N, K] are scratch.
 */
export function vqNearest(
  k: Kernels,
  z: Tensor,
  codebook: Tensor,
  norms: Tensor,
  dots: Tensor,
  idx: Tensor,
  zq: Tensor,
  opts: { gemm?: LinearOptions } = {},
): Dispatch[] {
  const name = "vqNearest";
  const d = dims(name, z, codebook);
  need(name, norms, d.K, "norms");
  need(name, dots, d.N * d.K, "dots");
  need(name, idx, d.N, "idx");
  need(name, zq, d.N * d.D, "zq");
  const u = uniform(k, d, {});
  return [
    k.dispatch(code, "vq_code_norms", [u, codebook, norms], groupsFor(d.K)),
    ...linearForward(
      k,
      { ...z, shape: [d.N, d.D] },
      codebook,
      null,
      { ...dots, shape: [d.N, d.K] },
      opts.gemm,
    ),
    k.dispatch(code, "vq_argmin", [u, codebook, norms, dots, idx, zq], d.N),
  ];
}

/**
 * dze = dzq + 2β/(N·D)·(ze − zq): the straight-through estimator (the decoder's gradient at zq
 * passes to ze) plus the gradient of the commitment loss β·mean((ze − sg(zq))²).
 */
export function vqStraightThroughBackward(
  k: Kernels,
  ze: Tensor,
  zq: Tensor,
  dzq: Tensor,
  dze: Tensor,
  beta: number,
  codeDim: number,
): Dispatch[] {
  const n = ze.length;
  for (const t of [zq, dzq, dze]) need("vqStraightThroughBackward", t, n, "a tensor");
  const d = { N: n / codeDim, D: codeDim, K: 0 };
  const u = uniform(k, d, { c: 2 * beta / n });
  return [k.dispatch(code, "vq_st_bwd", [u, ze, zq, dzq, dze], groupsFor(n))];
}

/** Rows per chunk of the per-code partial sums (fixed by the row count alone). */
export function vqChunkRows(N: number): number {
  return Math.max(16, Math.ceil(Math.sqrt(N)));
}

/**
 * The EMA codebook update from this step's encoder outputs ze [N, D] and their codes idx [N]
 * (see shaders/quantize.wgsl for the formulas), with dead-code restarts to rows `rand` [K] (u32,
 * each in [0, N), drawn by the caller's seeded RNG). metrics [2] receives this step's perplexity
 * and number of codes used. Partial-sum scratch is allocated here.
 */
export function vqEmaUpdate(
  k: Kernels,
  ze: Tensor,
  idx: Tensor,
  state: VqState,
  rand: Tensor,
  metrics: Tensor,
  opts: VqEmaOptions,
): Dispatch[] {
  const name = "vqEmaUpdate";
  const d = dims(name, ze, state.codebook);
  need(name, idx, d.N, "idx");
  need(name, state.clusterSize, d.K, "clusterSize");
  need(name, state.embedAvg, d.K * d.D, "embedAvg");
  need(name, state.unused, d.K, "unused");
  need(name, rand, d.K, "rand");
  need(name, metrics, 2, "metrics");
  if (!(opts.decay >= 0 && opts.decay < 1)) throw new Error(`${name}: decay ${opts.decay}`);
  if (!Number.isInteger(opts.deadAfter) || opts.deadAfter < 0) {
    throw new Error(`${name}: deadAfter ${opts.deadAfter} is not a count of steps`);
  }
  const rows = vqChunkRows(d.N), chunks = Math.ceil(d.N / rows);
  const part = k.tensor([chunks * d.K * (d.D + 1)], "vq partial counts and sums");
  const u = uniform(k, d, {
    rows,
    chunks,
    dead: opts.deadAfter,
    decay: opts.decay,
    eps: opts.eps,
  });
  return [
    k.dispatch(code, "vq_count_part", [u, ze, idx, part], groupsFor(chunks * d.K)),
    k.dispatch(
      code,
      "vq_ema",
      [
        u,
        ze,
        part,
        rand,
        state.codebook,
        state.clusterSize,
        state.embedAvg,
        state.unused,
        metrics,
      ],
      1,
    ),
  ];
}
