/**
 * `deno task bench`: speed of the training step (the trainer's own step function, with the run's
 * --micro-batch-size, --grad-checkpointing and --optimizer), of sampling (Euler + CFG), of the
 * linear kernel (n³ and the model's shapes), a per-kernel breakdown of one step from timestamp
 * queries, and the GPU memory of the step and of sampling, per precision (`--precision f32`,
 * `f16`, or `f32,f16`); `--memory`: only what the training run would allocate (a dry run).
 * Prints a table and one JSON line.
 */
import {
  defaultPrecision,
  describeGpu,
  type DiTConfig,
  formatBytes,
  generateImages,
  getGpu,
  initParams,
  Kernels,
  Model,
  type OptionTable,
  paramLayout,
  type Precision,
  precisionProblem,
  type PresetName,
  resolveConfig,
  trainOptionsProblem,
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
import { benchOptions, benchStep } from "./bench_step.ts";
import { benchMemory } from "./bench_memory.ts";

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
  micro_batch_size: {
    type: "int",
    help: "images per forward/backward pass of the step (gradient accumulation; default: all)",
    min: 1,
  },
  grad_checkpointing: {
    type: "boolean",
    help: "the step recomputes each block's activations in its backward",
  },
  optimizer: {
    type: "string",
    help: "the step's optimizer: adamw, or muon (Muon on the blocks' matrices)",
    choices: ["adamw", "muon"],
    default: "adamw",
  },
  memory: {
    type: "boolean",
    help: "only print what the training run would allocate (a dry run: nothing allocated or " +
      "trained), with and without checkpointing, against the device's limits",
  },
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
  const bytes = formatBytes;
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
  const step = { ...o, optimizer: o.optimizer as "adamw" | "muon" };
  const trainOpts = { ...benchOptions(k, step), preset: o.preset };
  const problem = trainOptionsProblem(trainOpts);
  if (problem) throw new UsageError(problem);
  const runs: Record<string, unknown>[] = [];
  if (o.memory) {
    for (const p of precisions) runs.push(benchMemory(gpu, cfg, trainOpts, p));
    console.log(`\nJSON: ${JSON.stringify({ ...result, runs })}`);
    return 0;
  }
  for (const p of precisions) {
    const r: Record<string, unknown> = { precision: p };
    if (!skip.has("step")) {
      Object.assign(r, await benchStep(k, timer, cfg, step, !skip.has("breakdown"), p));
    }
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
