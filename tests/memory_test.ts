/**
 * The memory of a training run by a dry run (src/train/memory.ts on src/gpu/sizing.ts): it equals
 * what a real Trainer allocates (its flat buffers and its activation tensors, byte for byte), in
 * f32 and f16, with micro-batches, checkpointing and Muon; the limits and the flags that fit are
 * derived from it; activation checkpointing cuts S/2's activations at batch 128 by ≥ 3×.
 */
import { resolveConfig } from "../src/model/config.ts";
import { Model, type Precision } from "../src/model/model.ts";
import { Trainer } from "../src/train/trainer.ts";
import { CPU_DEFAULTS, GPU_DEFAULTS, type TrainOptions } from "../src/train/options.ts";
import { ArrayDataset } from "../src/data/dataset.ts";
import {
  fittingFlags,
  limitExceeded,
  memoryLimitProblem,
  trainingMemory,
} from "../src/train/memory.ts";
import { kernels, testF16 } from "./harness.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import { assert } from "./task_run.ts";

const cfg = resolveConfig({ preset: "tiny", image_size: 16, in_channels: 1, num_classes: 3 });

async function sameAsReal(precision: Precision, extra: Partial<TrainOptions>) {
  // A fresh Kernels, as a process has: shared scratch (linear's split-K) is allocated once.
  const k = new Kernels((await kernels()).gpu);
  const opts = { ...CPU_DEFAULTS, batch_size: 6, precision, ...extra };
  const dry = trainingMemory(k.gpu, { cfg, opts, precision });
  const before = k.allocatedBytes;
  const model = new Model(k, cfg, { precision });
  const data = new ArrayDataset(new Uint8Array(2 * 256), Int32Array.of(0, 1), 1, 16, 3);
  const t = new Trainer(model, opts, data);
  const activations = k.allocatedBytes - before;
  const flats = [model.params, model.params16, t.ema.params, t.ema.params16, t.grads, t.m, t.v];
  const state = flats.reduce((a, b) => a + (b?.buffer.size ?? 0), 0);
  assert(
    dry.activations === activations && dry.state === state,
    `${precision} ${JSON.stringify(extra)}: dry run ${dry.activations} + ${dry.state}, ` +
      `real ${activations} + ${state}`,
  );
  assert(dry.total > state + activations, "the total also counts uniforms");
  console.log(
    `  ${precision} ${JSON.stringify(extra)}: activations ${activations}, state ${state} bytes ` +
      "(dry run = real)",
  );
}

Deno.test("the dry run's memory is what a real trainer allocates (f32)", async () => {
  await sameAsReal("f32", {});
  await sameAsReal("f32", { micro_batch_size: 2, grad_checkpointing: true, optimizer: "muon" });
});

await testF16("the dry run's memory is what a real trainer allocates (f16)", async () => {
  await sameAsReal("f16", { micro_batch_size: 3, optimizer: "muon" });
});

Deno.test("limits: the largest binding decides; the largest micro-batch that fits is found", async () => {
  const k = await kernels();
  const run = { cfg, opts: { ...CPU_DEFAULTS, batch_size: 96 }, precision: "f32" as const };
  const m = trainingMemory(k.gpu, run);
  // a limit just under the run's largest binding (an MLP activation, 1.5 MiB, over the 0.7 MiB of
  // gradients): the run is refused, and half the micro-batch fits
  const limits = {
    maxBufferSize: 2 ** 40,
    maxStorageBufferBindingSize: m.largestBinding.bytes - 4,
  };
  const why = limitExceeded(m, limits);
  assert(why?.includes("maxStorageBufferBindingSize"), `not refused: ${why}`);
  const line = memoryLimitProblem(k.gpu, run, limits)!;
  assert(
    /^out of memory: DiT-tiny\/4 on 1×16², batch 96, f32 needs .*mlp\.act.* fits with: --micro-batch-size 48 \(/
      .test(line),
    line,
  );
  const fits = fittingFlags(k.gpu, run, (x) => !limitExceeded(x, limits), limits);
  const micro = fits.find((f) => f.flags === "--micro-batch-size 48");
  assert(micro && micro.memory.largestBinding.bytes <= limits.maxStorageBufferBindingSize, "fit");
  assert(memoryLimitProblem(k.gpu, run) === undefined, "refused within the real limits");
});

Deno.test("activation checkpointing cuts S/2's activations at batch 128 by ≥ 3× (f32 and f16)", async () => {
  const k = await kernels();
  const s = resolveConfig({ preset: "S", image_size: 28, in_channels: 1, num_classes: 10 });
  const precisions: Precision[] = k.gpu.features.has("shader-f16") ? ["f32", "f16"] : ["f32"];
  for (const precision of precisions) {
    const opts = { ...GPU_DEFAULTS, preset: "S", batch_size: 128 };
    const plain = trainingMemory(k.gpu, { cfg: s, opts, precision });
    const ckpt = trainingMemory(k.gpu, {
      cfg: s,
      opts: { ...opts, grad_checkpointing: true },
      precision,
    });
    const cut = plain.activations / ckpt.activations;
    assert(cut >= 3, `${precision}: activations ${plain.activations} → ${ckpt.activations}`);
    console.log(`  S/2 batch 128 ${precision}: activations cut ${cut.toFixed(2)}×`);
  }
});
