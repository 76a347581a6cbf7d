/** Float64 brute-force reference of k-NN precision/recall (Kynkäänniemi et al. 2019). */

function d2(a: ArrayLike<number>, i: number, b: ArrayLike<number>, j: number, d: number): number {
  let s = 0;
  for (let t = 0; t < d; t++) s += (a[i * d + t] - b[j * d + t]) ** 2;
  return s;
}

/** Squared distance of each point to its k-th nearest other point of the same set. */
export function radii(x: ArrayLike<number>, d: number, k: number): Float64Array {
  const n = x.length / d, out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ds: number[] = [];
    for (let j = 0; j < n; j++) ds.push(d2(x, i, x, j, d));
    ds.sort((a, b) => a - b);
    out[i] = ds[k]; // ds[0] is the point itself
  }
  return out;
}

/** Share of `q` points inside some ball of `keys` (squared radii `r`). */
export function coverage(
  keys: ArrayLike<number>,
  r: Float64Array,
  q: ArrayLike<number>,
  d: number,
) {
  const nk = keys.length / d, nq = q.length / d;
  let inside = 0;
  for (let i = 0; i < nq; i++) {
    for (let j = 0; j < nk; j++) {
      if (d2(q, i, keys, j, d) <= r[j]) {
        inside++;
        break;
      }
    }
  }
  return inside / nq;
}

export function precisionRecall(
  real: ArrayLike<number>,
  fake: ArrayLike<number>,
  d: number,
  k = 3,
) {
  return {
    precision: coverage(real, radii(real, d, k), fake, d),
    recall: coverage(fake, radii(fake, d, k), real, d),
  };
}
