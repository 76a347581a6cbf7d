/**
 * Improved precision and recall (Kynkäänniemi et al. 2019) with k-NN manifolds: each set's
 * manifold is the union of balls around its points, of radius the distance to the point's k-th
 * nearest neighbour in the same set (k = 3). Precision = the share of generated points inside the
 * real manifold; recall = the share of real points inside the generated one.
 *
 * On the GPU: inner products of a block of queries against every key by the linear GEMM
 * (keys [N, D] · queries [b, D]ᵀ = [N, b]), then squared distances |q|² + |k|² − 2 q·k and the
 * per-query order statistic or ball test (src/ops/knn.ts). Blocks of queries keep the [N, b] matrix
 * under `maxBlockFloats`. Squared norms are summed in float64 on the CPU. Web-standard only.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { linearForward } from "../ops/linear.ts";
import { knnCover, knnKth } from "../ops/knn.ts";

export interface PrecisionRecall {
  precision: number;
  recall: number;
}

export interface KnnOptions {
  /** Neighbourhood size k (default 3). */
  k?: number;
  /** Largest [keys, block] matrix of inner products, in floats (default 2^25 = 128 MiB). */
  maxBlockFloats?: number;
}

/** Feature vectors on the GPU with their squared norms. */
interface Points {
  x: Tensor;
  norm: Tensor;
  n: number;
  d: number;
}

function upload(k: Kernels, features: Float32Array, d: number, label: string): Points {
  const n = features.length / d;
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`precision/recall: ${features.length} values are not whole ${d}-d vectors`);
  }
  const x = k.tensor([n, d], `${label} features`);
  k.write(x, features);
  const sq = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let a = 0; a < d; a++) s += features[i * d + a] ** 2;
    sq[i] = s;
  }
  const norm = k.tensor([n], `${label} norms`);
  k.write(norm, sq);
  return { x, norm, n, d };
}

/** Rows [s, s+n) of a [rows, d] tensor (s a multiple of 64 keeps the offset 256-aligned). */
function rows(t: Tensor, s: number, n: number, d: number): Tensor {
  return { ...t, offset: t.offset + s * d * 4, length: n * d, shape: [n, d] };
}

/**
 * For every query, over blocks: `op` gets the [keys, b] inner products of the block and the
 * block's slice of the output. Returns the output read back.
 */
async function blocked(
  k: Kernels,
  keys: Points,
  queries: Points,
  maxFloats: number,
  op: (dots: Tensor, qNorm: Tensor, out: Tensor) => Dispatch[],
): Promise<Float32Array> {
  const N = keys.n, Q = queries.n, d = keys.d;
  const block = Math.max(64, Math.floor(Math.min(Q, Math.floor(maxFloats / N)) / 64) * 64);
  const dotsAll = k.tensor([N * Math.min(block, Q)], "knn dots");
  const out = k.tensor([Q], "knn out");
  const dispatches: Dispatch[] = [];
  for (let s = 0; s < Q; s += block) {
    const n = Math.min(block, Q - s);
    const dots = { ...dotsAll, length: N * n, shape: [N, n] };
    dispatches.push(...linearForward(k, keys.x, rows(queries.x, s, n, d), null, dots));
    const qNorm = { ...queries.norm, offset: s * 4, length: n, shape: [n] };
    const o = { ...out, offset: s * 4, length: n, shape: [n] };
    dispatches.push(...op(dots, qNorm, o));
  }
  // One pass: blocks run in order, each GEMM after the previous block's scan has read `dots`.
  await k.run(dispatches);
  const r = await k.read(out);
  out.buffer.destroy();
  dotsAll.buffer.destroy();
  return r;
}

/** Squared k-NN radius of every point of a set within itself (the point itself excluded). */
async function radii(k: Kernels, p: Points, kNN: number, maxFloats: number): Promise<Tensor> {
  if (p.n <= kNN) {
    throw new Error(`precision/recall: a set of ${p.n} points has no ${kNN}-th nearest neighbour`);
  }
  // Order statistic kNN (0-based) counts the point itself (distance 0) as the first.
  const r = await blocked(
    k,
    p,
    p,
    maxFloats,
    (dots, qn, out) => knnKth(k, dots, p.norm, qn, out, kNN),
  );
  const t = k.tensor([p.n], "knn radii");
  k.write(t, r);
  return t;
}

/** Share of the queries inside the keys' manifold (balls of squared radius `keyRadius`). */
async function coverage(
  k: Kernels,
  keys: Points,
  keyRadius: Tensor,
  queries: Points,
  maxFloats: number,
): Promise<number> {
  const margin = await blocked(
    k,
    keys,
    queries,
    maxFloats,
    (dots, qn, out) => knnCover(k, dots, keys.norm, qn, keyRadius, out),
  );
  let inside = 0;
  for (const m of margin) if (m <= 0) inside++;
  return inside / queries.n;
}

/**
 * Precision and recall of `fake` [n_f, d] against `real` [n_r, d] features (k-NN manifolds,
 * k = 3 by default).
 */
export async function precisionRecall(
  k: Kernels,
  real: Float32Array,
  fake: Float32Array,
  d: number,
  opts: KnnOptions = {},
): Promise<PrecisionRecall> {
  const kNN = opts.k ?? 3, maxFloats = opts.maxBlockFloats ?? 2 ** 25;
  const r = upload(k, real, d, "real"), f = upload(k, fake, d, "fake");
  try {
    const rr = await radii(k, r, kNN, maxFloats);
    const fr = await radii(k, f, kNN, maxFloats);
    const precision = await coverage(k, r, rr, f, maxFloats);
    const recall = await coverage(k, f, fr, r, maxFloats);
    rr.buffer.destroy();
    fr.buffer.destroy();
    return { precision, recall };
  } finally {
    for (const t of [r.x, r.norm, f.x, f.norm]) t.buffer.destroy();
  }
}
