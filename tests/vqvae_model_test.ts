/**
 * The whole VQ-VAE on the GPU (encoder, quantizer, decoder; forward, losses, every weight's
 * gradient) against the float64 reference, whose encoder and decoder backward are first checked
 * by central finite differences. Tiny ragged configurations, SiLU and ReLU.
 */
import * as ref from "./reference/vqvae.ts";
import * as qref from "./reference/quantize.ts";
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer } from "../src/gpu/arena.ts";
import { resolveVqvaeConfig, type VQVAEConfig } from "../src/vqvae/config.ts";
import { paramLayout, stateLayout, trainableSpecs } from "../src/vqvae/params.ts";
import { VQVAEGraph } from "../src/vqvae/vqvae.ts";
import { mseBackward, mseForward } from "../src/ops/loss.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Central differences of f at a few elements of every weight tensor against `grads`. */
function fdCheck(
  what: string,
  w: ref.Weights,
  grads: ref.Weights,
  f: () => number,
  rng: Rng,
): void {
  for (const [name, g] of grads) {
    const x = w.get(name)!;
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    for (let j = 0; j < 2; j++) {
      const i = Math.floor(rng.uniform() * x.length), orig = x[i], h = 1e-5;
      x[i] = orig + h;
      const lp = f();
      x[i] = orig - h;
      const lm = f();
      x[i] = orig;
      const num = (lp - lm) / (2 * h);
      assert(
        Math.abs(num - g[i]) <= 1e-5 * Math.max(gmax, 1e-3) + 1e-7,
        `${what}: reference d${name}[${i}] = ${g[i]}, finite difference ${num} (seed ${TEST_SEED})`,
      );
    }
  }
}

const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i], 0);

const configs: [string, Partial<VQVAEConfig>, number][] = [
  [
    "SiLU, RGB 8x8, 1 res block",
    {
      image_size: 8,
      in_channels: 3,
      channels: 6,
      res_blocks: 1,
      groups: 2,
      codebook_size: 11,
      code_dim: 3,
    },
    2,
  ],
  [
    "ReLU, grey 12x12, 2 res blocks, batch 1",
    {
      image_size: 12,
      in_channels: 1,
      channels: 10,
      res_blocks: 2,
      groups: 5,
      act: "relu",
      codebook_size: 70,
      code_dim: 5,
    },
    1,
  ],
];

for (const [tag, partial, B] of configs) {
  const cfg = resolveVqvaeConfig({ beta: 0.25, ...partial });
  const { in_channels: C, image_size: H } = cfg;

  Deno.test(`vqvae reference: encoder and decoder backward by finite differences (${tag})`, () => {
    // With SiLU whatever the configuration: finite differences straddle ReLU's kink now and then
    // (ReLU itself is checked in tests/ops_elementwise_test.ts); the wiring is the same.
    const cfg = resolveVqvaeConfig({ beta: 0.25, ...partial, act: "silu" });
    const rng = new Rng(TEST_SEED ^ 0xfd0 ^ H);
    const w = ref.randomWeights(cfg, rng);
    const x = rng.normals(B * C * H * H, 0.5);
    const h = H / 4, nz = B * h * h * cfg.code_dim;
    const dze = rng.normals(nz);
    const e = ref.encoderGrads(cfg, w, x, B, dze);
    fdCheck("encoder", w, e.grads, () => dot(ref.encoderGrads(cfg, w, x, B, dze).y, dze), rng);
    const zq = rng.normals(nz);
    const dout = rng.normals(B * H * H * C);
    const d = ref.decoderGrads(cfg, w, zq, B, dout);
    fdCheck("decoder", w, d.grads, () => dot(ref.decoderGrads(cfg, w, zq, B, dout).y, dout), rng);
    // and the decoder's input gradient
    for (const i of [0, nz - 1]) {
      const orig = zq[i];
      zq[i] = orig + 1e-5;
      const lp = dot(ref.decoderGrads(cfg, w, zq, B, dout).y, dout);
      zq[i] = orig - 1e-5;
      const lm = dot(ref.decoderGrads(cfg, w, zq, B, dout).y, dout);
      zq[i] = orig;
      const num = (lp - lm) / 2e-5;
      assert(Math.abs(num - d.dzq[i]) < 1e-5 * Math.max(1, Math.abs(num)), `dzq[${i}]`);
    }
  });

  Deno.test(`vqvae GPU forward and every gradient against float64 (${tag})`, async () => {
    const k = await kernels();
    const rng = new Rng(TEST_SEED ^ 0x7e5 ^ H);
    const w = ref.randomWeights(cfg, rng);
    const x = rng.normals(B * C * H * H, 0.5);
    // Codes at the scale of the encoder output, so the search has real competition.
    const ze0 = ref.encoderGrads(cfg, w, x, B, new Float64Array(B * (H / 4) ** 2 * cfg.code_dim)).y;
    let s = 0;
    for (const v of ze0) s += v * v;
    const E = rng.normals(cfg.codebook_size * cfg.code_dim, Math.sqrt(s / ze0.length));

    const pl = paramLayout(cfg), sl = stateLayout(cfg);
    const params = new FlatBuffer(k.device, pl, "params");
    const grads = new FlatBuffer(k.device, pl, "grads");
    const state = new FlatBuffer(k.device, sl, "state");
    const flat = new Float32Array(pl.total);
    for (const [name, v] of w) flat.set(Float32Array.from(v), pl.get(name).offset);
    k.write(params.all(), flat);
    k.write(state.view("quantizer.embedding.weight"), Float32Array.from(E));
    k.write(grads.all(), new Float32Array(pl.total).fill(NaN));

    const g = new VQVAEGraph(k, cfg, params, state, B);
    const reconLoss = k.tensor([1]), commitLoss = k.tensor([1]), dRecon = k.tensor(g.recon.shape);
    k.write(g.x, Float32Array.from(x));
    await k.run([
      ...g.forward(),
      ...mseForward(k, g.recon, g.x, reconLoss),
      ...mseForward(k, g.encoder.ze, g.quantizer.zq, commitLoss),
      ...mseBackward(k, g.recon, g.x, dRecon),
      ...g.backward(dRecon, grads),
    ]);
    const codes = await k.readU32(g.quantizer.idx);
    const r = ref.vqvaeStep(cfg, w, E, x, B, codes);
    // The GPU's codes are the nearest ones (or float32 near-ties) for the reference's z_e.
    const N = codes.length, D = cfg.code_dim, K = cfg.codebook_size;
    const want = qref.nearest(r.ze, E, N, D, K), dist = qref.distances(r.ze, E, N, D, K);
    for (let n = 0; n < N; n++) {
      const gap = dist[n * K + codes[n]] - dist[n * K + want[n]];
      assert(
        gap <= 1e-5 * Math.max(1, Math.abs(dist[n * K + want[n]])),
        `row ${n}: code gap ${gap}`,
      );
    }
    const errs: string[] = [];
    const check = (label: string, got: ArrayLike<number>, wantv: ArrayLike<number>) =>
      errs.push(`${label} ${assertClose(`vqvae ${tag} ${label}`, got, wantv).toExponential(1)}`);
    check("ze", await k.read(g.encoder.ze), r.ze);
    check("zq", await k.read(g.quantizer.zq), r.zq);
    check("recon", await k.read(g.recon), r.recon);
    check("recon loss", await k.read(reconLoss), [r.reconLoss]);
    check("commit loss", await k.read(commitLoss), [r.commitLoss]);
    const gflat = await k.read(grads.all());
    let worst = 0;
    for (const spec of trainableSpecs(cfg)) {
      const slot = pl.get(spec.name);
      const got = gflat.subarray(slot.offset, slot.offset + slot.length);
      worst = Math.max(
        worst,
        assertClose(`vqvae ${tag} d${spec.name}`, got, r.grads.get(spec.name)!),
      );
    }
    errs.push(`${trainableSpecs(cfg).length} gradients (worst ${worst.toExponential(1)})`);
    console.log(`  ${tag}: relative error ${errs.join(", ")}`);
  });
}
