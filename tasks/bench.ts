/**
 * `deno task bench`: speed of the training step (the trainer's own step function), of sampling
 * (Euler + CFG), of the linear kernel (n³ and the model's shapes), a per-kernel breakdown of one
 * step from timestamp queries, and the GPU memory of the step and of sampling, per precision
 * (`--precision f32`, `f16`, or `f32,f16`). Prints a table and one JSON line.
 */
import {
  ArrayDataset,
  CPU_DEFAULTS,
  createModel,
  defaultPrecision,
  describeGpu,
  type DiTConfig,
  generateImages,
  getGpu,
  GPU_DEFAULTS,
  initParams,
  Kernels,
  Model,
  type OptionTable,
  paramLayout,
  type Precision,
  precisionProblem,
  type PresetName,
  resolveConfig,
  Trainer,
} from "../mod.ts";
import {
  helpText,
  type OptionValues,
  parseFlags,
  runMain,
  UsageError,
  withDefaults,
} from "./cli.ts";
import { type LinearShape, median, modelShapes, timeLinear, Timer } from "./bench_timing.ts";
import { exitOnSignals } from "./files.ts";

const PARTS = ["step", "sample", "linear", "breakdown"];

const OPTIONS = {
  preset: {
    type: "string",
    help: "model preset",
    choices: ["tiny", "small", "S", "B", "L"],
    default: "S",
    cpu: "tiny",
  },
  batch_size: { type: "int", help: "images per training step", default: 128, cpu: 4, min: 1 },
  image_size: { type: "int", help: "image size", default: 28, cpu: 16, min: 1 },
  in_channels: {
    type: "int",
    help: "image channels",
    aliases: ["channels"],
    default: 1,
    min: 1,
    max: 3,
  },
  num_classes: { type: "int", help: "classes", default: 10, min: 0 },
  patch_size: { type: "int", help: "patch size (default: the preset's)", min: 1 },
  // 30 steps: the ~11 ms until a wait settles in Deno is then ~0.4 ms of a measured step
  iters: { type: "int", help: "timed steps per measurement", default: 30, cpu: 2, min: 1 },
  repeats: {
    type: "int",
    help: "measurements (the median is reported)",
    default: 5,
    cpu: 3,
    min: 1,
  },
  sampling_steps: {
    type: "int",
    help: "Euler steps for the sampling figure",
    default: 50,
    cpu: 2,
    min: 1,
  },
  skip: {
    type: "string",
    help: `comma list of parts to skip: ${PARTS.join(", ")}`,
    check: (s: string) => {
      const bad = s.split(",").filter((p) => p && !PARTS.includes(p));
      return bad.length ? `has unknown part(s) ${bad.join(", ")} (known: ${PARTS})` : undefined;
    },
  },
  matmul_size: {
    type: "int",
    help: "size n of the n×n×n linear figure",
    default: 4096,
    cpu: 128,
    min: 1,
  },
  precision: {
    type: "string",
    help:
      "f32, f16 (mixed precision; needs shader-f16), or both as f32,f16 (default: f16 on a GPU with shader-f16, else f32)",
    check: (s: string) => {
      const bad = s.split(",").filter((p) => p !== "f32" && p !== "f16");
      return bad.length || !s ? `must be f32, f16 or f32,f16, got '${s}'` : undefined;
    },
  },
} satisfies OptionTable;

type Opts = OptionValues<typeof OPTIONS>;

/** Bytes in MiB, or GiB from 1 GiB. */
function bytes(n: number): string {
  return n >= 2 ** 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : `${(n / 2 ** 20).toFixed(1)} MiB`;
}

/** (a) the training step, (d) its per-kernel breakdown, (e) its memory. */
async function benchStep(
  k: Kernels,
  timer: Timer,
  cfg: DiTConfig,
  o: Opts,
  skip: Set<string>,
  precision: Precision,
) {
  const n = Math.max(64, o.batch_size);
  const pixels = new Uint8Array(n * cfg.in_channels * cfg.image_size ** 2)
    .map((_, i) => (i * 2654435761) >>> 24);
  const labels = Int32Array.from({ length: n }, (_, i) => i % Math.max(1, cfg.num_classes));
  const data = new ArrayDataset(pixels, labels, cfg.in_channels, cfg.image_size, cfg.num_classes);
  const opts = {
    ...(k.gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS),
    batch_size: o.batch_size,
    log_every: 1000,
    train_steps: 1e9,
  };
  const before = k.allocatedBytes;
  const model = await createModel(cfg, { seed: opts.seed, kernels: k, precision });
  const trainer = new Trainer(model, opts, data);
  // Every buffer the step owns: the flat buffers (weights and their f16 copy, gradients, Adam m
  // and v, EMA) and the activations and scratch tensors it allocated (all live at the peak).
  const flats = [model.params, model.params16, trainer.grads, trainer.m, trainer.v];
  const memory = flats.reduce((a, b) => a + (b?.buffer.size ?? 0), 0) +
    trainer.ema.params.buffer.size + k.allocatedBytes - before;
  for (let i = 0; i < 3; i++) await trainer.trainStep();
  await k.device.queue.onSubmittedWorkDone();
  const ms: number[] = [];
  for (let r = 0; r < o.repeats; r++) {
    const t0 = performance.now();
    for (let i = 0; i < o.iters; i++) await trainer.trainStep();
    await k.device.queue.onSubmittedWorkDone();
    ms.push((performance.now() - t0) / o.iters);
  }
  const stepMs = median(ms);
  // GPU time needs timestamp queries (a wall-clock "GPU time" would include the submit-and-wait
  // round trip); it is shown only if it fits in the wall time of its own submission and of a
  // pipelined step, which some drivers' timestamps (e.g. software adapters') do not.
  let gpuMs: number | null = null, why = "no timestamp queries";
  if (timer.timestamps) {
    const t0 = performance.now();
    const per = await timer.passes(Array.from({ length: 3 }, () => trainer.stepDispatches));
    const wall = performance.now() - t0;
    const fits = per.reduce((a, b) => a + b, 0) <= wall && median(per) <= stepMs;
    if (fits) gpuMs = median(per);
    else why = "the adapter's timestamps exceed the wall time";
  }
  const ips = o.batch_size / (stepMs / 1e3);
  const hostMs = trainer.hostMsPerStep;
  console.log(
    `training step (${precision}): ${stepMs.toFixed(2)} ms wall` +
      (gpuMs !== null
        ? ` (GPU ${gpuMs.toFixed(2)} ms; wall/GPU ${(stepMs / gpuMs).toFixed(3)})`
        : ` (no GPU time: ${why})`) +
      `, ${ips.toFixed(1)} images/s, host ${hostMs.work.toFixed(2)} ms a step (draw, upload, ` +
      `encode) + ${hostMs.submit.toFixed(2)} ms in submit, ${trainer.dispatchCount} dispatches, ` +
      `${bytes(memory)} of buffers ` +
      `(weights${precision === "f16" ? " f32 + f16" : ""}, gradients, Adam, EMA, activations)`,
  );
  const result: Record<string, unknown> = {
    precision,
    step: {
      ms: stepMs,
      gpu_ms: gpuMs,
      host_ms: hostMs.work,
      submit_ms: hostMs.submit,
      images_per_s: ips,
      dispatches: trainer.dispatchCount,
      memory_bytes: memory,
    },
  };
  if (skip.has("breakdown")) return result;
  if (gpuMs === null) {
    console.log(`per-kernel breakdown: skipped (${why})`);
    return result;
  }
  const per = await timer.passes(trainer.stepDispatches.map((d) => [d]));
  const byLabel = new Map<string, { ms: number; n: number }>();
  trainer.stepDispatches.forEach((d, i) => {
    const e = byLabel.get(d.label) ?? { ms: 0, n: 0 };
    e.ms += per[i];
    e.n++;
    byLabel.set(d.label, e);
  });
  const total = per.reduce((a, b) => a + b, 0);
  const rows = [...byLabel.entries()].sort((a, b) => b[1].ms - a[1].ms);
  console.log(
    `\nper-kernel breakdown (each dispatch in its own pass; sum ${total.toFixed(2)} ms):`,
  );
  console.log(`  ${"kernel".padEnd(44)} ${"calls".padStart(5)} ${"ms".padStart(9)} share`);
  for (const [label, e] of rows.slice(0, 48)) {
    console.log(
      `  ${label.padEnd(44)} ${String(e.n).padStart(5)} ${e.ms.toFixed(3).padStart(9)} ` +
        `${(100 * e.ms / total).toFixed(1).padStart(5)}%`,
    );
  }
  result.breakdown = rows.map(([label, e]) => ({ kernel: label, calls: e.n, ms: e.ms }));
  return result;
}

/** (b) sampling: Euler with CFG 3 over a batch of images (inference-only graph). */
async function benchSample(k: Kernels, cfg: DiTConfig, o: Opts, precision: Precision) {
  const model = new Model(k, cfg, { weights: initParams(cfg, 0), precision });
  const labels = Array.from({ length: o.batch_size }, (_, i) => i % Math.max(1, cfg.num_classes));
  const run = () =>
    generateImages(model, { labels, steps: o.sampling_steps, cfgScale: 3, batch: o.batch_size });
  const before = k.allocatedBytes;
  await run();
  // The inference graph's activations and the solver's vectors, allocated by the first run.
  const activations = k.allocatedBytes - before;
  const ms: number[] = [];
  for (let r = 0; r < Math.min(3, o.repeats); r++) {
    const t0 = performance.now();
    await run();
    ms.push(performance.now() - t0);
  }
  // For comparison: the activations the training graph (what sampling ran before the
  // inference-only graph) allocates for the same guided batch.
  const beforeTrain = k.allocatedBytes;
  model.graph(2 * o.batch_size);
  const trainingGraph = k.allocatedBytes - beforeTrain;
  const ips = o.batch_size / (median(ms) / 1e3);
  const weights = paramLayout(cfg).total * (precision === "f16" ? 6 : 4);
  console.log(
    `\nsampling (${precision}): ${o.sampling_steps} Euler steps, CFG 3, ${o.batch_size} images: ` +
      `${median(ms).toFixed(1)} ms wall, ${ips.toFixed(1)} images/s; memory ` +
      `${bytes(weights + activations)} (weights ${bytes(weights)}, activations and solver ` +
      `${bytes(activations)}; a training graph's activations would be ${bytes(trainingGraph)})`,
  );
  return {
    sample: {
      steps: o.sampling_steps,
      cfg_scale: 3,
      images: o.batch_size,
      ms: median(ms),
      images_per_s: ips,
      memory_bytes: weights + activations,
      training_graph_activation_bytes: trainingGraph,
    },
  };
}

/** (c) the linear kernel at n³ and at the model's shapes. */
async function benchLinear(k: Kernels, timer: Timer, cfg: DiTConfig, o: Opts) {
  const n = o.matmul_size, T = (cfg.image_size / cfg.patch_size) ** 2;
  const shapes: LinearShape[] = [
    { name: `${n}³`, M: n, N: n, K: n, kind: "fwd" },
    ...modelShapes(o.batch_size, T, cfg.hidden_size, cfg.in_channels * cfg.patch_size ** 2),
  ];
  const by = timer.timestamps ? "GPU timestamps" : "wall clock of back-to-back repeats";
  console.log(`\nlinear kernel (TFLOP/s, median of ${o.repeats}; ${by}):`);
  console.log(
    `  ${"product".padEnd(12)} ${"M".padStart(7)} ${"N".padStart(6)} ${"K".padStart(7)} ` +
      `${"GFLOP".padStart(8)} ${"TFLOP/s".padStart(8)}`,
  );
  const rows = [];
  for (const s of shapes) {
    const tf = await timeLinear(k, timer, s, o.repeats);
    const gf = 2 * s.M * s.N * s.K / 1e9;
    rows.push({ name: `${s.name} ${s.kind}`, M: s.M, N: s.N, K: s.K, tflops: tf });
    console.log(
      `  ${`${s.name} ${s.kind}`.padEnd(12)} ${String(s.M).padStart(7)} ` +
        `${String(s.N).padStart(6)} ${String(s.K).padStart(7)} ` +
        `${gf.toPrecision(3).padStart(8)} ${tf.toPrecision(3).padStart(8)}`,
    );
  }
  return { linear: rows };
}

async function main(): Promise<number> {
  const { values, help } = parseFlags(Deno.args, OPTIONS);
  if (help) {
    console.log(helpText("Usage: deno task bench [options]", OPTIONS, "software adapter"));
    return 0;
  }
  const skip = new Set(String(values.skip ?? "").split(",").filter(Boolean));
  exitOnSignals(); // Ctrl-C: exit through the exit hooks (the private XDG_RUNTIME_DIR goes too)
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const o: Opts = withDefaults(OPTIONS, values, gpu.isFallback);
  let cfg: DiTConfig;
  try {
    cfg = resolveConfig({
      preset: o.preset as PresetName,
      image_size: o.image_size,
      in_channels: o.in_channels,
      num_classes: o.num_classes,
      ...(o.patch_size ? { patch_size: o.patch_size } : {}),
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
  const timer = new Timer(k);
  console.log(
    `adapter: ${describeGpu(gpu)}; GPU times by ${
      timer.timestamps ? "timestamp queries" : "none (no timestamp queries): wall clock only"
    }`,
  );
  console.log(
    `model: DiT-${o.preset}/${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², ` +
      `batch ${o.batch_size}, ${(cfg.image_size / cfg.patch_size) ** 2} tokens`,
  );
  const result: Record<string, unknown> = {
    adapter: gpu.name,
    fallback: gpu.isFallback,
    timestamps: timer.timestamps,
    config: { preset: o.preset, ...cfg, batch_size: o.batch_size },
  };
  const precisions = (o.precision ?? defaultPrecision(gpu)).split(",") as Precision[];
  for (const p of precisions) {
    const why = precisionProblem(gpu, p);
    if (why) throw new UsageError(`--${why}`);
  }
  const runs: Record<string, unknown>[] = [];
  for (const p of precisions) {
    const r: Record<string, unknown> = { precision: p };
    if (!skip.has("step")) Object.assign(r, await benchStep(k, timer, cfg, o, skip, p));
    if (!skip.has("sample")) Object.assign(r, await benchSample(k, cfg, o, p));
    runs.push(r);
    if (precisions.length > 1) console.log("");
  }
  result.runs = runs;
  if (!skip.has("linear")) Object.assign(result, await benchLinear(k, timer, cfg, o));
  console.log(`\nJSON: ${JSON.stringify(result)}`);
  return 0;
}

if (import.meta.main) await runMain(main);
