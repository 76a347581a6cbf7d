/**
 * Fréchet distance between Gaussians fitted to two feature sets (the FID formula on this
 * project's classifier features), all in float64:
 *   FD = |μ1 − μ2|² + Tr(S1 + S2 − 2·(S1^½ S2 S1^½)^½).
 * The symmetric square roots come from a cyclic Jacobi eigendecomposition (accurate to a few ulps
 * of the largest eigenvalue on symmetric input), so there is no complex-valued sqrtm and no
 * "imaginary component" to discard as in scipy-based FID code. Web-standard only.
 */

/** Mean and covariance (unbiased, divided by n − 1) of n feature vectors of dimension d. */
export interface Gaussian {
  n: number;
  d: number;
  mean: Float64Array;
  /** d × d, row-major, symmetric. */
  cov: Float64Array;
}

/** Fit a Gaussian to `features` [n, d] (float64 accumulation; two-pass: mean, then centred). */
export function gaussianStats(features: ArrayLike<number>, d: number): Gaussian {
  const n = features.length / d;
  if (!Number.isInteger(n) || n < 2) {
    throw new Error(`gaussianStats: need at least 2 whole ${d}-d vectors, got ${features.length}`);
  }
  const mean = new Float64Array(d);
  for (let i = 0; i < n; i++) for (let a = 0; a < d; a++) mean[a] += features[i * d + a];
  for (let a = 0; a < d; a++) mean[a] /= n;
  const cov = new Float64Array(d * d);
  const c = new Float64Array(d);
  for (let i = 0; i < n; i++) {
    for (let a = 0; a < d; a++) c[a] = features[i * d + a] - mean[a];
    for (let a = 0; a < d; a++) {
      const ca = c[a], row = a * d;
      for (let b = a; b < d; b++) cov[row + b] += ca * c[b];
    }
  }
  for (let a = 0; a < d; a++) {
    for (let b = a; b < d; b++) {
      const v = cov[a * d + b] / (n - 1);
      cov[a * d + b] = v;
      cov[b * d + a] = v;
    }
  }
  return { n, d, mean, cov };
}

/**
 * Eigen-decomposition of a symmetric n × n matrix by cyclic Jacobi rotations:
 * A = V diag(values) Vᵀ, eigenvectors in the columns of V (row-major). `a` is not modified.
 */
export function symmetricEigen(a: ArrayLike<number>, n: number): {
  values: Float64Array;
  vectors: Float64Array;
} {
  if (a.length !== n * n) throw new Error(`symmetricEigen: ${a.length} values for ${n}×${n}`);
  const A = Float64Array.from(a);
  for (let i = 0; i < n; i++) {
    for (let j = i + 1; j < n; j++) {
      const m = 0.5 * (A[i * n + j] + A[j * n + i]);
      A[i * n + j] = m;
      A[j * n + i] = m;
    }
  }
  const V = new Float64Array(n * n);
  for (let i = 0; i < n; i++) V[i * n + i] = 1;
  // Rotations keep the Frobenius norm: stop when the off-diagonal part is below 1e-15 of it.
  let frob = 0;
  for (let i = 0; i < n * n; i++) frob += A[i] * A[i];
  for (let sweep = 0; sweep < 60; sweep++) {
    let off = 0;
    for (let p = 0; p < n; p++) for (let q = p + 1; q < n; q++) off += 2 * A[p * n + q] ** 2;
    if (off <= 1e-30 * frob) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = A[p * n + q];
        if (apq === 0) continue;
        const app = A[p * n + p], aqq = A[q * n + q];
        // The rotation angle that zeroes A[p][q] (Rutishauser's stable form).
        const theta = (aqq - app) / (2 * apq);
        const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1), s = t * c;
        for (let k = 0; k < n; k++) {
          const akp = A[k * n + p], akq = A[k * n + q];
          A[k * n + p] = c * akp - s * akq;
          A[k * n + q] = s * akp + c * akq;
        }
        for (let k = 0; k < n; k++) {
          const apk = A[p * n + k], aqk = A[q * n + k];
          A[p * n + k] = c * apk - s * aqk;
          A[q * n + k] = s * apk + c * aqk;
        }
        A[p * n + q] = 0;
        A[q * n + p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = V[k * n + p], vkq = V[k * n + q];
          V[k * n + p] = c * vkp - s * vkq;
          V[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  const values = new Float64Array(n);
  for (let i = 0; i < n; i++) values[i] = A[i * n + i];
  return { values, vectors: V };
}

/** The symmetric positive semi-definite square root R (R·R = A, R = Rᵀ); negative eigenvalues
 * from rounding are taken as 0. */
export function sqrtPsd(a: ArrayLike<number>, n: number): Float64Array {
  const { values, vectors: V } = symmetricEigen(a, n);
  const r = new Float64Array(n * n);
  const s = values.map((v) => Math.sqrt(Math.max(v, 0)));
  for (let i = 0; i < n; i++) {
    for (let j = i; j < n; j++) {
      let acc = 0;
      for (let k = 0; k < n; k++) acc += V[i * n + k] * s[k] * V[j * n + k];
      r[i * n + j] = acc;
      r[j * n + i] = acc;
    }
  }
  return r;
}

function matmul(a: Float64Array, b: Float64Array, n: number): Float64Array {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < n; k++) {
      const aik = a[i * n + k];
      if (aik === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] += aik * b[k * n + j];
    }
  }
  return c;
}

/** Tr((S1^½ S2 S1^½)^½) = Σ sqrt(eigenvalues of the symmetric PSD S1^½ S2 S1^½). */
export function traceSqrtProduct(
  s1: Float64Array,
  s2: Float64Array,
  n: number,
  sqrtS1?: Float64Array,
): number {
  const r = sqrtS1 ?? sqrtPsd(s1, n);
  const m = matmul(matmul(r, s2, n), r, n);
  const { values } = symmetricEigen(m, n);
  let t = 0;
  for (const v of values) t += Math.sqrt(Math.max(v, 0));
  return t;
}

/** S^½ of each first argument of frechetDistance, kept: a reference set is scored many times. */
const roots = new WeakMap<Gaussian, Float64Array>();

/** Fréchet distance between two Gaussians of the same dimension (put the reused one first). */
export function frechetDistance(a: Gaussian, b: Gaussian): number {
  if (a.d !== b.d) throw new Error(`frechetDistance: dimensions ${a.d} and ${b.d} differ`);
  const d = a.d;
  let mu = 0, tr = 0;
  for (let i = 0; i < d; i++) {
    mu += (a.mean[i] - b.mean[i]) ** 2;
    tr += a.cov[i * d + i] + b.cov[i * d + i];
  }
  let r = roots.get(a);
  if (!r) roots.set(a, r = sqrtPsd(a.cov, d));
  return mu + tr - 2 * traceSqrtProduct(a.cov, b.cov, d, r);
}
