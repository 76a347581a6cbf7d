/**
 * Activation checkpointing: a recomputing training graph (`model.graph(B, { recompute: true })`)
 * gives the plain graph's output and every parameter gradient bit for bit (same kernels on the
 * same inputs), in f32 and in f16 mixed precision, and allocates less: only each block's output
 * is kept besides one block's activations.
 */
import { resolveConfig } from "../src/model/config.ts";
import { ODD } from "./configs.ts";
import type { DiTConfig } from "../src/model/config.ts";
import { Model, type Precision } from "../src/model/model.ts";
import { paramSpecs } from "../src/model/params.ts";
import { FlatBuffer } from "../src/gpu/arena.ts";
import { randomWeights } from "./random_weights.ts";
import { kernels, testF16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

/** Index of the first element whose bits differ, or -1. */
function firstBitDifference(a: Float32Array, b: Float32Array): number {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  if (x.length !== y.length) return 0;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return i;
  return -1;
}

async function checkRecompute(cfg: DiTConfig, B: number, precision: Precision) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xc4e7);
  const model = new Model(k, cfg, { weights: randomWeights(cfg, rng).flat, precision });
  const n = B * cfg.in_channels * cfg.image_size ** 2;
  const x = Float32Array.from(rng.normals(n));
  const t = Float32Array.from({ length: B }, () => rng.uniform());
  const y = Uint32Array.from({ length: B }, (_, i) => i % (cfg.num_classes + 1));
  const dOut = k.tensor([n], "dOut");
  k.write(dOut, Float32Array.from(rng.normals(n)));
  const run = async (recompute: boolean) => {
    const before = k.allocatedBytes;
    const graph = model.graph(B, { recompute });
    const activations = k.allocatedBytes - before;
    k.write(graph.x, x);
    k.write(graph.t, t);
    k.write(graph.y, y);
    k.fill(graph.out, NaN);
    const grads = new FlatBuffer(k.device, model.layout, "grads");
    k.fill(grads.all(), NaN);
    const backward = graph.backward(dOut, grads);
    await k.run([...graph.forward(), ...backward]);
    const scratch = k.allocatedBytes - before - activations;
    return {
      out: await k.read(graph.out),
      grads: await k.read(grads.all()),
      bytes: k.allocatedBytes - before,
      scratch,
    };
  };
  const plain = await run(false), re = await run(true);
  for (const [what, a, b] of [["out", plain.out, re.out], ["grads", plain.grads, re.grads]]) {
    const i = firstBitDifference(a as Float32Array, b as Float32Array);
    if (i >= 0) {
      throw new Error(`${precision} ${what}[${i}]: plain ${a[i as number]}, recomputed ${b[i]}`);
    }
  }
  for (const s of paramSpecs(cfg).filter((s) => s.trainable)) {
    const { offset, length } = model.layout.get(s.name);
    if (plain.grads.subarray(offset, offset + length).some((v) => !Number.isFinite(v))) {
      throw new Error(`the gradient of ${s.name} was not written`);
    }
  }
  // The recomputing graph keeps depth block outputs plus one block's activations.
  if (cfg.depth > 1 ? !(re.bytes < plain.bytes) : re.bytes !== plain.bytes) {
    throw new Error(`recomputing graph allocates ${re.bytes} bytes, the plain one ${plain.bytes}`);
  }
  console.log(
    `  ${precision}: bit-identical; graph memory ${plain.bytes} → ${re.bytes} bytes ` +
      `(${(plain.bytes / re.bytes).toFixed(2)}×)`,
  );
}

const odd = { ...ODD, depth: 4 };

Deno.test("activation checkpointing: gradients bit-identical to the plain backward (f32)", () =>
  checkRecompute(odd, 3, "f32"));

await testF16(
  "activation checkpointing: gradients bit-identical to the plain backward (f16)",
  () => checkRecompute(odd, 3, "f16"),
);

Deno.test("activation checkpointing: one block (nothing to recompute) and unconditional", () =>
  checkRecompute(
    resolveConfig({ preset: "tiny", depth: 1, image_size: 8, in_channels: 1, num_classes: 0 }),
    2,
    "f32",
  ));
