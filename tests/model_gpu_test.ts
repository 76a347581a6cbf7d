/**
 * The GPU DiT2D (forward and every parameter gradient) against the float64 CPU reference, with
 * non-zero random weights everywhere (DiT's zero init would hide bugs).
 */
import { resolveConfig } from "../src/model/config.ts";
import { ODD } from "./configs.ts";
import type { DiTConfig } from "../src/model/config.ts";
import { paramSpecs } from "../src/model/params.ts";
import { randomWeights } from "./random_weights.ts";
import { Model, type Precision } from "../src/model/model.ts";
import type { DiTGraph } from "../src/model/dit.ts";
import { FlatBuffer } from "../src/gpu/arena.ts";
import { ditBackwardRef, ditForwardRef } from "./reference/dit.ts";
import { assertClose, kernels, testF16, U16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

async function checkModel(cfg: DiTConfig, B: number, precision: Precision = "f32", tol = 1e-4) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x5eed);
  const { flat, map } = randomWeights(cfg, rng);
  const model = new Model(k, cfg, { weights: flat, precision });
  const graph = model.graph(B);
  const x = rng.normals(B * cfg.in_channels * cfg.image_size ** 2);
  const t = Float64Array.from({ length: B }, () => Math.fround(rng.uniform()));
  const y = Int32Array.from(
    { length: B },
    (_, i) => i === 0 ? cfg.num_classes : Math.floor(rng.uniform() * cfg.num_classes),
  );
  k.write(graph.x, Float32Array.from(x));
  k.write(graph.t, Float32Array.from(t));
  k.write(graph.y, Uint32Array.from(y));
  k.fill(graph.out, NaN);
  await k.run(graph.forward());
  const ref = ditForwardRef(cfg, map, x, t, y);
  const e = assertClose(`${precision} forward out`, await k.read(graph.out), ref.out, tol);
  // backward
  const dOut = rng.normals(ref.out.length);
  const dOutT = k.tensor([ref.out.length], "dOut");
  k.write(dOutT, Float32Array.from(dOut));
  const grads = new FlatBuffer(k.device, model.layout, "grads");
  k.fill(grads.all(), NaN);
  await k.run(graph.backward(dOutT, grads));
  const rg = ditBackwardRef(cfg, map, ref.cache, dOut);
  const got = await k.read(grads.all());
  let worst = 0;
  for (const s of paramSpecs(cfg)) {
    if (!s.trainable) continue;
    const slot = model.layout.get(s.name);
    const r = rg.get(s.name);
    if (!r) throw new Error(`reference has no gradient for ${s.name}`);
    worst = Math.max(
      worst,
      assertClose(
        `${precision} grad ${s.name}`,
        got.subarray(slot.offset, slot.offset + slot.length),
        r,
        tol,
      ),
    );
  }
  console.log(
    `  forward ${e.toExponential(2)}, worst parameter gradient ${worst.toExponential(2)}`,
  );
}

Deno.test("GPU DiT matches the float64 reference: tiny preset", () =>
  checkModel(
    resolveConfig({ preset: "tiny", image_size: 16, in_channels: 1, num_classes: 10 }),
    3,
  ));

Deno.test("GPU DiT matches the float64 reference: odd config (H=12, p=2, C=3, D=48, heads=3, L=3)", () =>
  checkModel(
    ODD,
    2,
  ));

Deno.test("GPU DiT matches the float64 reference: unconditional", () =>
  checkModel(resolveConfig({ preset: "tiny", image_size: 8, in_channels: 2, num_classes: 0 }), 2));

/**
 * Mixed precision against the same float64 reference (f32 weights, no rounding): every f16
 * rounding (weights, LayerNorm outputs, qkv, attention, proj, fc1, GELU, fc2, and their
 * gradients) adds a relative error up to u = 2^-11. First order, along a gradient's path through
 * L blocks that is ~26·L roundings, adding like a random walk: √(26·3)·u ≈ 9u at the depths
 * here. Tolerance 16u = 7.8e-3 of max|ref| (measured: forward ~1.3u, gradients ~4.5u), while a
 * wrong kernel (a dropped term, a wrong index) is off by O(1).
 */
const F16_MODEL_TOL = 16 * U16;

await testF16("f16 GPU DiT matches the float64 reference: tiny preset", () =>
  checkModel(
    resolveConfig({ preset: "tiny", image_size: 16, in_channels: 1, num_classes: 10 }),
    3,
    "f16",
    F16_MODEL_TOL,
  ));

await testF16("f16 GPU DiT matches the float64 reference: odd config", () =>
  checkModel(
    ODD,
    2,
    "f16",
    F16_MODEL_TOL,
  ));

/**
 * The inference-only graph (one block's activations, the stream updated in place) runs the same
 * kernels in the same order as the training graph's forward: the same output bit for bit.
 */
async function inferenceMatchesTraining(precision: Precision) {
  const k = await kernels();
  const cfg = ODD;
  const rng = new Rng(TEST_SEED ^ 0x1f3);
  const B = 3;
  const model = new Model(k, cfg, { weights: randomWeights(cfg, rng).flat, precision });
  const x = Float32Array.from(rng.normals(B * 3 * 12 * 12));
  const t = Float32Array.from({ length: B }, () => rng.uniform());
  const y = Uint32Array.of(1, 5, 3);
  const outs = [];
  // Activation bytes of each graph (its tensors are allocated when it is built).
  const sizes: number[] = [];
  const build = (f: () => DiTGraph) => {
    const before = k.allocatedBytes;
    const g = f();
    sizes.push(k.allocatedBytes - before);
    return g;
  };
  const graphs = [build(() => model.graph(B)), build(() => model.inferenceGraph(B))];
  for (const g of graphs) {
    k.write(g.x, x);
    k.write(g.t, t);
    k.write(g.y, y);
    k.fill(g.out, NaN);
    await k.run(g.forward());
    outs.push(await k.read(g.out));
  }
  for (let i = 0; i < outs[0].length; i++) {
    if (!Object.is(outs[0][i], outs[1][i])) {
      throw new Error(`${precision}: inference out[${i}] = ${outs[1][i]}, training ${outs[0][i]}`);
    }
  }
  const [train, infer] = sizes;
  if (!(infer < train / 2)) throw new Error(`inference graph ${infer} bytes, training ${train}`);
  console.log(`  ${precision}: identical outputs; activations ${train} → ${infer} bytes`);
}

Deno.test("inference graph = training forward, bit for bit: f32", () =>
  inferenceMatchesTraining("f32"));
await testF16(
  "inference graph = training forward, bit for bit: f16",
  () => inferenceMatchesTraining("f16"),
);
