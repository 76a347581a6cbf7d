/**
 * The evaluation metrics on known cases: the float64 symmetric square root (R·R = A), Fréchet
 * distance (a set with itself; Gaussians against closed forms; sampled Gaussians), and k-NN
 * precision/recall on the GPU against a float64 brute force (identical sets = 1; a shifted set
 * loses precision).
 */
import {
  frechetDistance,
  type Gaussian,
  gaussianStats,
  sqrtPsd,
  symmetricEigen,
} from "../src/eval/frechet.ts";
import { precisionRecall } from "../src/eval/prdc.ts";
import { kernels } from "./harness.ts";
import * as ref from "./reference/prdc.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { assert } from "./task_run.ts";

function matmul(a: Float64Array, b: Float64Array, n: number) {
  const c = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += a[i * n + k] * b[k * n + j];
      c[i * n + j] = s;
    }
  }
  return c;
}
const transpose = (a: Float64Array, n: number) =>
  a.map((_, i) => a[(i % n) * n + Math.floor(i / n)]);
const maxAbs = (a: ArrayLike<number>) =>
  Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);

/** A random orthogonal matrix (Gram–Schmidt of normals). */
function orthogonal(rng: Rng, n: number): Float64Array {
  const q = rng.normals(n * n);
  for (let c = 0; c < n; c++) {
    for (let p = 0; p < c; p++) {
      let dot = 0;
      for (let r = 0; r < n; r++) dot += q[r * n + c] * q[r * n + p];
      for (let r = 0; r < n; r++) q[r * n + c] -= dot * q[r * n + p];
    }
    let norm = 0;
    for (let r = 0; r < n; r++) norm += q[r * n + c] ** 2;
    for (let r = 0; r < n; r++) q[r * n + c] /= Math.sqrt(norm);
  }
  return q;
}

/** Q diag(e) Qᵀ. */
function withEigen(q: Float64Array, e: number[], n: number): Float64Array {
  const d = new Float64Array(n * n);
  e.forEach((v, i) => d[i * n + i] = v);
  return matmul(matmul(q, d, n), transpose(q, n), n);
}

function gaussian(mean: Float64Array, cov: Float64Array): Gaussian {
  return { n: 0, d: mean.length, mean, cov };
}

Deno.test("symmetric eigendecomposition and PSD square root: A V = V Λ, R·R = A", () => {
  const rng = new Rng(TEST_SEED ^ 0x5a1);
  const n = 12;
  const q = orthogonal(rng, n);
  // Full rank, and rank 5 (a covariance with dead features): eigenvalues 0 must stay real.
  for (
    const e of [Array.from({ length: n }, () => 0.01 + 3 * rng.uniform()), [
      ...Array.from({ length: 5 }, () => 0.5 + rng.uniform()),
      ...new Array(n - 5).fill(0),
    ]]
  ) {
    const a = withEigen(q, e, n);
    const { values, vectors } = symmetricEigen(a, n);
    const av = matmul(a, vectors, n);
    const vl = vectors.map((v, i) => v * values[i % n]);
    assert(maxAbs(av.map((v, i) => v - vl[i])) < 1e-12 * maxAbs(a), "A V != V Λ");
    const sorted = [...values].sort((x, y) => x - y), want = [...e].sort((x, y) => x - y);
    assert(maxAbs(sorted.map((v, i) => v - want[i])) < 1e-12, `eigenvalues ${sorted} vs ${want}`);
    const r = sqrtPsd(a, n);
    const rr = matmul(r, r, n);
    const err = maxAbs(rr.map((v, i) => v - a[i])) / maxAbs(a);
    assert(err < 1e-12, `R·R differs from A by ${err} (relative)`);
    assert(
      maxAbs(r.map((v, i) => v - r[(i % n) * n + Math.floor(i / n)])) === 0,
      "R not symmetric",
    );
  }
});

Deno.test("FD: a set with itself is 0", () => {
  const rng = new Rng(TEST_SEED ^ 0x5a2);
  const d = 16, f = Float32Array.from(rng.normals(400 * d, 2));
  const g = gaussianStats(f, d);
  const fd = frechetDistance(g, g);
  let tr = 0;
  for (let i = 0; i < d; i++) tr += g.cov[i * d + i];
  assert(Math.abs(fd) < 1e-10 * tr, `FD(x, x) = ${fd} (trace ${tr})`);
});

Deno.test("FD: Gaussians against closed forms", () => {
  const rng = new Rng(TEST_SEED ^ 0x5a3);
  // Shared eigenvectors (rotated, not diagonal): FD = |Δμ|² + Σ (√a − √b)².
  const n = 10, q = orthogonal(rng, n);
  const a = Array.from({ length: n }, () => 0.1 + 4 * rng.uniform());
  const b = Array.from({ length: n }, () => 0.1 + 4 * rng.uniform());
  const m1 = rng.normals(n), m2 = rng.normals(n);
  let want = 0;
  for (let i = 0; i < n; i++) {
    want += (m1[i] - m2[i]) ** 2 + (Math.sqrt(a[i]) - Math.sqrt(b[i])) ** 2;
  }
  const got = frechetDistance(
    gaussian(m1, withEigen(q, a, n)),
    gaussian(m2, withEigen(q, b, n)),
  );
  assert(Math.abs(got - want) < 1e-10 * want, `commuting: FD ${got}, closed form ${want}`);
  // Any 2×2 pair (not commuting): Tr sqrt(X) = sqrt(Tr X + 2 sqrt(det X)) with X = S1^½ S2 S1^½,
  // Tr X = Tr(S1 S2), det X = det S1 · det S2.
  for (let t = 0; t < 5; t++) {
    const s = [0, 1].map(() => {
      const l = rng.normals(4);
      const c = new Float64Array(4);
      for (let i = 0; i < 2; i++) {
        for (let j = 0; j < 2; j++) {
          c[i * 2 + j] = l[i * 2] * l[j * 2] + l[i * 2 + 1] * l[j * 2 + 1];
        }
      }
      c[0] += 0.1;
      c[3] += 0.1;
      return c;
    });
    const [s1, s2] = s;
    const det = (c: Float64Array) => c[0] * c[3] - c[1] * c[2];
    const tr12 = matmul(s1, s2, 2);
    const trSqrt = Math.sqrt(tr12[0] + tr12[3] + 2 * Math.sqrt(det(s1) * det(s2)));
    const u1 = rng.normals(2), u2 = rng.normals(2);
    const w2 = (u1[0] - u2[0]) ** 2 + (u1[1] - u2[1]) ** 2 + s1[0] + s1[3] + s2[0] + s2[3] -
      2 * trSqrt;
    const g2 = frechetDistance(gaussian(u1, s1), gaussian(u2, s2));
    assert(Math.abs(g2 - w2) < 1e-10 * Math.max(1, w2), `2×2: FD ${g2}, closed form ${w2}`);
  }
});

Deno.test("FD of sampled Gaussians approaches the closed form", () => {
  const rng = new Rng(TEST_SEED ^ 0x5a4);
  const d = 4, N = 400_000;
  // x = μ + L z with L diagonal scales: covariance diag(σ²).
  const s1 = [1, 0.5, 2, 1.5], s2 = [0.7, 0.5, 1, 2.5], mu2 = [0.5, 0, -0.3, 0.2];
  const draw = (s: number[], mu: number[]) => {
    const z = rng.normals(N * d);
    return Float32Array.from(z, (v, i) => mu[i % d] + s[i % d] * v);
  };
  const g1 = gaussianStats(draw(s1, [0, 0, 0, 0]), d), g2 = gaussianStats(draw(s2, mu2), d);
  let want = 0;
  for (let i = 0; i < d; i++) want += mu2[i] ** 2 + (s1[i] - s2[i]) ** 2;
  const got = frechetDistance(g1, g2);
  // Sampling error of FD at N = 400,000: sd 0.008 over 60 seeds (at 40,000 it was 0.028, and 24
  // of 4,000 seeds reached this bound: a flaky test).
  assert(Math.abs(got - want) < 0.08, `sampled FD ${got}, closed form ${want}`);
  assert(Math.abs(g1.cov[2 * d + 2] - 4) < 0.15, `variance ${g1.cov[2 * d + 2]}, want 4`);
});

Deno.test("precision/recall on the GPU: = float64 brute force; identical sets = 1; a shift lowers precision", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x5a5);
  const d = 16, nr = 150, nf = 130;
  const real = Float32Array.from(rng.normals(nr * d));
  // Fake: a different spread, so neither score is 0 or 1.
  const fake = Float32Array.from(rng.normals(nf * d, 1.3));
  // Small blocks: several 64-query blocks, the last one ragged.
  const got = await precisionRecall(k, real, fake, d, { maxBlockFloats: 150 * 64 });
  const want = ref.precisionRecall(real, fake, d);
  assert(
    got.precision === want.precision && got.recall === want.recall,
    `GPU ${JSON.stringify(got)} vs float64 ${JSON.stringify(want)} (seed ${TEST_SEED})`,
  );
  assert(want.precision > 0 && want.precision < 1 && want.recall > 0, "degenerate case");
  const same = await precisionRecall(k, real, real, d);
  assert(same.precision === 1 && same.recall === 1, `identical sets: ${JSON.stringify(same)}`);
  const shifted = real.map((v) => v + 1.5); // |shift| = 6, about the k-NN radius
  const sh = await precisionRecall(k, real, shifted, d);
  assert(sh.precision < 0.8, `shifted set keeps precision ${sh.precision}`);
  const wantSh = ref.precisionRecall(real, shifted, d);
  assert(sh.precision === wantSh.precision && sh.recall === wantSh.recall, "shifted vs float64");
});
