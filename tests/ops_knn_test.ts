/**
 * The k-NN kernels against a float64 reference on the inner products and norms of random points
 * (so the distances are real ones, mostly away from the clamp at 0): the k-th order statistic for
 * k = 0, 3 and the largest, and the ball-cover margin. Queries span two 256-thread workgroups,
 * ragged.
 */
import * as ref from "./reference/knn.ts";
import { assertAllClose, kernels, opTolerance } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { KNN_MAX_K, knnCover, knnKth } from "../src/ops/knn.ts";

const N = 61, B = 300, D = 5;

function points(rng: Rng) {
  const keys = rng.normals(N * D), queries = rng.normals(B * D, 1.2);
  const dots = new Float64Array(N * B);
  for (let j = 0; j < N; j++) {
    for (let i = 0; i < B; i++) {
      let s = 0;
      for (let a = 0; a < D; a++) s += keys[j * D + a] * queries[i * D + a];
      dots[j * B + i] = s;
    }
  }
  const norms = (x: Float64Array, n: number) =>
    Float64Array.from({ length: n }, (_, i) => {
      let s = 0;
      for (let a = 0; a < D; a++) s += x[i * D + a] ** 2;
      return s;
    });
  return { dots, keyNorm: norms(keys, N), queryNorm: norms(queries, B) };
}

Deno.test("knn: k-th smallest squared distance and ball-cover margin = float64", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x6a1);
  const p = points(rng);
  const radius = Float64Array.from({ length: N }, () => 2 + 4 * rng.uniform());
  const upload = (x: Float64Array, shape: number[], name: string) => {
    const t = k.tensor(shape, name);
    k.write(t, Float32Array.from(x));
    return t;
  };
  const dots = upload(p.dots, [N, B], "dots");
  const kn = upload(p.keyNorm, [N], "keyNorm"), qn = upload(p.queryNorm, [B], "queryNorm");
  const kr = upload(radius, [N], "keyRadius");
  const out = k.tensor([B], "out");
  // f32 inputs of |values| ~ 10 and one rounding in the kernel: 1e-5 of the largest distance.
  for (const kth of [0, 3, KNN_MAX_K]) {
    k.fill(out, NaN);
    await k.run(knnKth(k, dots, kn, qn, out, kth));
    const want = ref.knnKth(p.dots, p.keyNorm, p.queryNorm, kth);
    const e = assertAllClose(`knn_kth k=${kth}`, await k.read(out), want, opTolerance(want, 1e-5));
    console.log(`  k=${kth}: relative error ${e.toExponential(2)}`);
  }
  k.fill(out, NaN);
  await k.run(knnCover(k, dots, kn, qn, kr, out));
  const want = ref.knnCover(p.dots, p.keyNorm, p.queryNorm, radius);
  assertAllClose("knn_cover", await k.read(out), want, opTolerance(want, 1e-5));
  const inside = want.filter((m) => m <= 0).length;
  if (inside === 0 || inside === B) throw new Error(`degenerate case: ${inside}/${B} inside`);
});
