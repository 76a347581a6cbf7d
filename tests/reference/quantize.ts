/**
 * Float64 reference of the VQ-VAE quantizer: nearest codes, the straight-through gradient with the
 * commitment term, and one EMA codebook update with Laplace smoothing and dead-code restarts
 * (the formulas of shaders/quantize.wgsl, written as plain loops).
 */
export type F64 = Float64Array;

/** d[n, k] = |e_k|² − 2·z_n·e_k (|z_n|² left out: the same for every code). */
export function distances(z: F64, E: F64, N: number, D: number, K: number): F64 {
  const out = new Float64Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      let ee = 0, ze = 0;
      for (let d = 0; d < D; d++) {
        ee += E[k * D + d] ** 2;
        ze += z[n * D + d] * E[k * D + d];
      }
      out[n * K + k] = ee - 2 * ze;
    }
  }
  return out;
}

/** The nearest code of each row (ties to the lowest index). */
export function nearest(z: F64, E: F64, N: number, D: number, K: number): Int32Array {
  const dist = distances(z, E, N, D, K);
  const idx = new Int32Array(N);
  for (let n = 0; n < N; n++) {
    let best = 0;
    for (let k = 1; k < K; k++) if (dist[n * K + k] < dist[n * K + best]) best = k;
    idx[n] = best;
  }
  return idx;
}

export function gather(E: F64, idx: ArrayLike<number>, D: number): F64 {
  const out = new Float64Array(idx.length * D);
  for (let n = 0; n < idx.length; n++) {
    for (let d = 0; d < D; d++) out[n * D + d] = E[idx[n] * D + d];
  }
  return out;
}

/** β·mean((ze − zq)²) with zq a constant (stop-gradient). */
export function commitmentLoss(ze: F64, zq: F64, beta: number): number {
  let s = 0;
  for (let i = 0; i < ze.length; i++) s += (ze[i] - zq[i]) ** 2;
  return beta * s / ze.length;
}

/** dze = dzq (straight through) + ∂/∂ze of commitmentLoss. */
export function straightThroughBackward(ze: F64, zq: F64, dzq: F64, beta: number): F64 {
  return ze.map((v, i) => dzq[i] + 2 * beta * (v - zq[i]) / ze.length);
}

export interface State {
  codebook: F64;
  clusterSize: F64;
  embedAvg: F64;
  unused: F64;
}

/** One EMA update in place; returns the perplexity, codes used, and the restarted codes. */
export function emaStep(
  s: State,
  ze: F64,
  idx: ArrayLike<number>,
  rand: ArrayLike<number>,
  o: { N: number; D: number; K: number; decay: number; eps: number; deadAfter: number },
): { perplexity: number; used: number; restarted: number[] } {
  const { N, D, K, decay, eps } = o;
  const count = new Float64Array(K), sum = new Float64Array(K * D);
  for (let n = 0; n < N; n++) {
    count[idx[n]]++;
    for (let d = 0; d < D; d++) sum[idx[n] * D + d] += ze[n * D + d];
  }
  let total = 0, entropy = 0, used = 0;
  for (let k = 0; k < K; k++) {
    s.clusterSize[k] = decay * s.clusterSize[k] + (1 - decay) * count[k];
    for (let d = 0; d < D; d++) {
      s.embedAvg[k * D + d] = decay * s.embedAvg[k * D + d] + (1 - decay) * sum[k * D + d];
    }
    total += s.clusterSize[k];
    if (count[k] > 0) {
      const p = count[k] / N;
      entropy -= p * Math.log(p);
      used++;
      s.unused[k] = 0;
    } else s.unused[k]++;
  }
  const restarted: number[] = [];
  for (let k = 0; k < K; k++) {
    if (o.deadAfter > 0 && s.unused[k] >= o.deadAfter) {
      for (let d = 0; d < D; d++) {
        s.codebook[k * D + d] = ze[rand[k] * D + d];
        s.embedAvg[k * D + d] = ze[rand[k] * D + d];
      }
      s.clusterSize[k] = 1;
      s.unused[k] = 0;
      restarted.push(k);
    } else {
      const smoothed = (s.clusterSize[k] + eps) / (total + K * eps) * total;
      for (let d = 0; d < D; d++) s.codebook[k * D + d] = s.embedAvg[k * D + d] / smoothed;
    }
  }
  return { perplexity: Math.exp(entropy), used, restarted };
}
