/**
 * The quantizer's kernels against the float64 reference: nearest codes (distance GEMM + argmin,
 * ties to the lowest index), the straight-through gradient with the commitment term, and a replay
 * of three full quantizer steps (nearest, gradient, EMA codebook update with restarts).
 */
import * as ref from "./reference/quantize.ts";
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer, Layout } from "../src/gpu/arena.ts";
import type { Kernels } from "../src/gpu/kernels.ts";
import type { LinearOptions } from "../src/ops/linear.ts";
import {
  VQ_EPS,
  vqEmaUpdate,
  vqNearest,
  type VqState,
  vqStraightThroughBackward,
} from "../src/ops/quantize.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

const f32 = (a: Float64Array) => Float32Array.from(a);
const tensor = (k: Kernels, data: Float64Array, shape: number[]) => {
  const t = k.tensor(shape);
  k.write(t, f32(data));
  return t;
};

/**
 * Every GPU index is the reference's nearest code, or (a float32 near-tie) one whose float64
 * distance is within 1e-5 of the minimum. Returns the number of such ties.
 */
function checkNearest(got: Uint32Array, z: Float64Array, E: Float64Array, D: number, K: number) {
  const N = got.length;
  const dist = ref.distances(z, E, N, D, K);
  const want = ref.nearest(z, E, N, D, K);
  let ties = 0;
  for (let n = 0; n < N; n++) {
    if (got[n] === want[n]) continue;
    const gap = dist[n * K + got[n]] - dist[n * K + want[n]];
    let scale = 0;
    for (let k = 0; k < K; k++) scale = Math.max(scale, Math.abs(dist[n * K + k]));
    assert(
      got[n] < K && gap <= 1e-5 * scale,
      `row ${n}: code ${got[n]} (distance +${gap}) instead of ${want[n]} (seed ${TEST_SEED})`,
    );
    ties++;
  }
  return ties;
}

/** vqNearest of z [N, D] against the codebook E [K, D] (outputs first poisoned): codes and rows. */
async function runNearest(
  k: Kernels,
  z: Float64Array,
  E: Float64Array,
  [N, D, K]: number[],
  gemm?: LinearOptions,
) {
  const idx = k.tensor([N]), zq = k.tensor([N, D]);
  k.fill(zq, NaN);
  k.write(idx, new Uint32Array(N).fill(0xffffffff));
  const [ze, codes] = [tensor(k, z, [N, D]), tensor(k, E, [K, D])];
  await k.run(vqNearest(k, ze, codes, k.tensor([K]), k.tensor([N, K]), idx, zq, { gemm }));
  return { got: await k.readU32(idx), zq: await k.read(zq) };
}

async function nearestCase(N: number, D: number, K: number, gemm?: LinearOptions) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ (N * 131 + D * 7 + K));
  const z = rng.normals(N * D), E = rng.normals(K * D);
  const { got, zq } = await runNearest(k, z, E, [N, D, K], gemm);
  const ties = checkNearest(got, z, E, D, K);
  // zq is exactly the chosen code's row.
  assertClose("vq zq", zq, ref.gather(E, got, D), 0);
  console.log(`  nearest N${N} D${D} K${K}: ${N - ties}/${N} rows exact, ${ties} near-ties`);
}

// Ragged: D not a multiple of 4, K not a multiple of the argmin workgroup (64), several GEMM tiles.
Deno.test("vq nearest N=37 D=3 K=11", () => nearestCase(37, 3, 11));
Deno.test("vq nearest N=70 D=4 K=130 (K > argmin workgroup)", () => nearestCase(70, 4, 130));
Deno.test("vq nearest batch-1 sized, GEMM scalar", () =>
  nearestCase(9, 5, 7, { variant: "scalar" }));
Deno.test("vq nearest GEMM small split", () =>
  nearestCase(40, 8, 33, { variant: "small", splits: 2 }));

Deno.test("vq nearest: exact ties go to the lowest code index", async () => {
  const k = await kernels();
  const [N, D, K] = [5, 2, 70];
  // Codes 3, 40 and 69 equal; rows equal to them must pick 3. Other codes far away.
  const E = new Float64Array(K * D).map((_, i) => 100 + i);
  for (const c of [3, 40, 69]) E.set([0.5, -0.25], c * D);
  const z = new Float64Array(N * D).map((_, i) => (i % 2 ? -0.25 : 0.5));
  const { got } = await runNearest(k, z, E, [N, D, K]);
  assert(got.every((v) => v === 3), `tied rows chose ${got}`);
});

Deno.test("vq straight-through gradient with the commitment term", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x57);
  const [N, D, beta] = [23, 3, 0.25];
  const ze = rng.normals(N * D), zq = rng.normals(N * D), dzq = rng.normals(N * D);
  // The reference's commitment gradient by central differences (zq held constant).
  const want = ref.straightThroughBackward(ze, zq, dzq, beta);
  for (const i of [0, 7, N * D - 1]) {
    const h = 1e-6, x = Float64Array.from(ze);
    x[i] += h;
    const lp = ref.commitmentLoss(x, zq, beta);
    x[i] -= 2 * h;
    const lm = ref.commitmentLoss(x, zq, beta);
    const fd = (lp - lm) / (2 * h) + dzq[i];
    assert(Math.abs(fd - want[i]) < 1e-7, `reference dze[${i}] ${want[i]} vs fd ${fd}`);
  }
  const dze = k.tensor([N, D]);
  k.fill(dze, NaN);
  await k.run(
    vqStraightThroughBackward(
      k,
      tensor(k, ze, [N, D]),
      tensor(k, zq, [N, D]),
      tensor(k, dzq, [N, D]),
      dze,
      beta,
      D,
    ),
  );
  const e = assertClose("vq straight-through dze", await k.read(dze), want);
  console.log(`  straight-through: relative error ${e.toExponential(2)}`);
});

Deno.test("vq: three quantizer steps (nearest, gradient, EMA update with restarts) against a float64 replay", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xe3a);
  const [N, D, K, beta] = [10, 3, 13, 0.25];
  const opts = { N, D, K, decay: 0.9, eps: VQ_EPS, deadAfter: 2 };
  // The state lives in one flat buffer, as in the model (four views bound in one dispatch).
  const layout = new Layout();
  layout.add("codebook", [K, D]);
  layout.add("cluster_size", [K]);
  layout.add("embed_avg", [K, D]);
  layout.add("unused", [K]);
  const flat = new FlatBuffer(k.device, layout, "vq state");
  const st: VqState = {
    codebook: flat.view("codebook"),
    clusterSize: flat.view("cluster_size"),
    embedAvg: flat.view("embed_avg"),
    unused: flat.view("unused"),
  };
  const s: ref.State = {
    codebook: rng.normals(K * D),
    clusterSize: Float64Array.from(rng.ints(K, 5), (v) => Math.fround(0.5 + v)),
    embedAvg: rng.normals(K * D),
    unused: Float64Array.from(rng.ints(K, 2)), // 0 or 1: some codes restart at step 1
  };
  k.write(st.codebook, f32(s.codebook));
  k.write(st.clusterSize, f32(s.clusterSize));
  k.write(st.embedAvg, f32(s.embedAvg));
  k.write(st.unused, f32(s.unused));
  const ze = k.tensor([N, D]), dzq = k.tensor([N, D]), rand = k.tensor([K]);
  const idx = k.tensor([N]), zq = k.tensor([N, D]), dze = k.tensor([N, D]);
  const metrics = k.tensor([2]);
  const step = [
    ...vqNearest(k, ze, st.codebook, k.tensor([K]), k.tensor([N, K]), idx, zq),
    ...vqStraightThroughBackward(k, ze, zq, dzq, dze, beta, D),
    ...vqEmaUpdate(k, ze, idx, st, rand, metrics, opts),
  ];
  let restarts = 0;
  for (let t = 1; t <= 3; t++) {
    // Encoder outputs near some codes (so codes are shared) and far from others.
    const z = rng.normals(N * D, 0.3);
    for (let n = 0; n < N; n++) {
      for (let d = 0; d < D; d++) {
        z[n * D + d] = Math.fround(z[n * D + d] + s.codebook[(n % 4) * D + d]);
      }
    }
    const g = rng.normals(N * D);
    const r = rng.ints(K, N);
    k.write(ze, f32(z));
    k.write(dzq, f32(g));
    k.write(rand, Uint32Array.from(r));
    await k.run(step);
    const got = await k.readU32(idx);
    checkNearest(got, z, s.codebook, D, K);
    const q = ref.gather(s.codebook, got, D);
    assertClose(`step ${t} zq`, await k.read(zq), q, 1e-5);
    assertClose(
      `step ${t} dze`,
      await k.read(dze),
      ref.straightThroughBackward(z, q, g, beta),
      1e-5,
    );
    const m = ref.emaStep(s, z, got, r, opts);
    restarts += m.restarted.length;
    for (const [name, want] of Object.entries(s) as [keyof ref.State, Float64Array][]) {
      assertClose(`step ${t} ${name}`, await k.read(st[name as keyof VqState]), want, 1e-5);
    }
    const [perplexity, used] = await k.read(metrics);
    assert(used === m.used, `step ${t}: ${used} codes used, reference ${m.used}`);
    assertClose(`step ${t} perplexity`, [perplexity], [m.perplexity], 1e-5);
    console.log(
      `  step ${t}: ${m.used} codes used, perplexity ${
        m.perplexity.toFixed(3)
      }, restarted ${m.restarted}`,
    );
  }
  assert(restarts > 0, "no code restarted in three steps: the test would not cover restarts");
});
