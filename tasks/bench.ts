/**
 * `deno task bench`: speed of the training step (the trainer's own step function), of sampling
 * (Euler + CFG), of the linear kernel (4096³ and the model's shapes), a per-kernel breakdown of one
 * step from timestamp queries, and the step's GPU memory. Prints a table and one JSON line.
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { type Dispatch, Kernels, type Tensor } from "../src/gpu/kernels.ts";
import { type PresetName, resolveConfig } from "../src/model/config.ts";
import { Trainer } from "../src/train/trainer.ts";
import { CPU_DEFAULTS, GPU_DEFAULTS } from "../src/train/options.ts";
import { ArrayDataset } from "../src/data/dataset.ts";
import { generateImages } from "../src/model/sampler.ts";
import { linearBackwardInput, linearBackwardWeight, linearForward } from "../src/ops/linear.ts";
import { type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";

const SPECS: Record<string, FlagSpec> = {
  preset: { kind: "string", help: "model preset", choices: ["tiny", "small", "S", "B", "L"] },
  batch_size: { kind: "int", help: "images per training step" },
  image_size: { kind: "int", help: "image size" },
  in_channels: { kind: "int", help: "image channels", aliases: ["channels"] },
  num_classes: { kind: "int", help: "classes" },
  patch_size: { kind: "int", help: "patch size (default: the preset's)" },
  iters: { kind: "int", help: "timed steps per measurement" },
  repeats: { kind: "int", help: "measurements (the median is reported)" },
  sampling_steps: { kind: "int", help: "Euler steps for the sampling figure" },
  skip: { kind: "string", help: "comma list of parts to skip: step, sample, linear, breakdown" },
  matmul_size: { kind: "int", help: "size n of the n×n×n linear figure" },
};
const GPU = {
  preset: "S",
  batch_size: 128,
  image_size: 28,
  in_channels: 1,
  num_classes: 10,
  iters: 10,
  repeats: 5,
  sampling_steps: 50,
  matmul_size: 4096,
};
const CPU = {
  preset: "tiny",
  batch_size: 4,
  image_size: 16,
  in_channels: 1,
  num_classes: 10,
  iters: 2,
  repeats: 3,
  sampling_steps: 2,
  matmul_size: 128,
};

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];

/** GPU time (ms) of encoding `dispatches` `reps` times in one pass, by timestamp queries. */
export class Timer {
  private qs?: GPUQuerySet;
  private resolve?: GPUBuffer;
  private read?: GPUBuffer;
  readonly timestamps: boolean;
  constructor(readonly k: Kernels, readonly slots = 4096) {
    this.timestamps = k.gpu.features.has("timestamp-query");
    if (this.timestamps) {
      this.qs = k.device.createQuerySet({ type: "timestamp", count: slots });
      this.resolve = k.device.createBuffer({
        size: slots * 8,
        usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
      });
      this.read = k.device.createBuffer({
        size: slots * 8,
        usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
      });
    }
  }

  /** Milliseconds of each pass in `passes` (each a list of dispatches, encoded `reps` times). */
  async passes(passes: Dispatch[][], reps = 1): Promise<number[]> {
    const { device } = this.k;
    if (!this.timestamps) {
      const out: number[] = [];
      for (const p of passes) {
        const t0 = performance.now();
        this.k.submit(Array.from({ length: reps }, () => p).flat());
        await device.queue.onSubmittedWorkDone();
        out.push(performance.now() - t0);
      }
      return out;
    }
    const out: number[] = [];
    for (let s = 0; s < passes.length; s += this.slots / 2) {
      const chunk = passes.slice(s, s + this.slots / 2);
      const enc = device.createCommandEncoder();
      chunk.forEach((p, i) => {
        this.k.encode(enc, Array.from({ length: reps }, () => p).flat(), {
          querySet: this.qs!,
          beginningOfPassWriteIndex: 2 * i,
          endOfPassWriteIndex: 2 * i + 1,
        });
      });
      enc.resolveQuerySet(this.qs!, 0, chunk.length * 2, this.resolve!, 0);
      enc.copyBufferToBuffer(this.resolve!, 0, this.read!, 0, chunk.length * 16);
      device.queue.submit([enc.finish()]);
      await this.read!.mapAsync(GPUMapMode.READ);
      const t = new BigUint64Array(this.read!.getMappedRange().slice(0, chunk.length * 16));
      this.read!.unmap();
      for (let i = 0; i < chunk.length; i++) out.push(Number(t[2 * i + 1] - t[2 * i]) / 1e6);
    }
    return out;
  }
}

interface LinearShape {
  name: string;
  M: number;
  N: number;
  K: number;
  kind: "fwd" | "dX" | "dW";
}

/** The model's linear products for a batch: forward and both backward products of each layer. */
function modelShapes(B: number, T: number, D: number, P: number): LinearShape[] {
  const M = B * T;
  const layers: [string, number, number, number][] = [
    ["qkv", M, 3 * D, D],
    ["proj", M, D, D],
    ["fc1", M, 4 * D, D],
    ["fc2", M, D, 4 * D],
    ["adaLN", B, 6 * D, D],
    ["final", M, P, D],
    ["patch", M, D, P],
  ];
  const out: LinearShape[] = [];
  for (const [name, m, n, k] of layers) {
    out.push({ name, M: m, N: n, K: k, kind: "fwd" });
    out.push({ name, M: m, N: k, K: n, kind: "dX" });
    out.push({ name, M: n, N: k, K: m, kind: "dW" });
  }
  return out;
}

async function timeLinear(
  k: Kernels,
  timer: Timer,
  s: LinearShape,
  repeats: number,
): Promise<number> {
  // y[M,N] = x[M,K]·w[N,K]ᵀ (fwd); dX[M,N] = dY[M,K]·W[K,N] (dX); dW[M,N] = dYᵀ·X, dY [K,M], X [K,N] (dW)
  const rnd = (shape: number[]) => {
    const t = k.tensor(shape, "bench");
    const n = t.length, a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.sin(i * 12.9898) * 0.5;
    k.write(t, a);
    return t;
  };
  let ds: Dispatch[];
  const ts: Tensor[] = [];
  if (s.kind === "fwd") {
    const x = rnd([s.M, s.K]), w = rnd([s.N, s.K]), b = rnd([s.N]), y = k.tensor([s.M, s.N]);
    ts.push(x, w, b, y);
    ds = linearForward(k, x, w, b, y);
  } else if (s.kind === "dX") {
    const dy = rnd([s.M, s.K]), w = rnd([s.K, s.N]), dx = k.tensor([s.M, s.N]);
    ts.push(dy, w, dx);
    ds = linearBackwardInput(k, dy, w, dx);
  } else {
    const dy = rnd([s.K, s.M]),
      x = rnd([s.K, s.N]),
      dw = k.tensor([s.M, s.N]),
      db = k.tensor([s.M]);
    ts.push(dy, x, dw, db);
    ds = linearBackwardWeight(k, dy, x, dw, db);
  }
  const flops = 2 * s.M * s.N * s.K;
  // Enough back-to-back repetitions (≥ ~50 ms on an H100) that the clocks ramp up and stay up.
  const reps = Math.max(3, Math.min(500, Math.round(3e12 / flops)));
  await timer.passes([ds], reps); // warm up: compile, clocks
  const ms: number[] = [];
  for (let r = 0; r < repeats; r++) ms.push((await timer.passes([ds], reps))[0] / reps);
  for (const t of ts) t.buffer.destroy();
  return flops / (median(ms) / 1e3) / 1e12;
}

async function main() {
  const { values: v, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(
      helpText(
        "Usage: deno task bench [options]\n\nDefaults shown are the GPU ones; a software adapter uses: " +
          JSON.stringify(CPU),
        SPECS,
        GPU,
      ),
    );
    return;
  }
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const o = { ...(gpu.isFallback ? CPU : GPU), ...v } as typeof GPU & {
    patch_size?: number;
    skip?: string;
  };
  const skip = new Set(String(o.skip ?? "").split(",").filter(Boolean));
  for (const s of skip) {
    if (!["step", "sample", "linear", "breakdown"].includes(s)) {
      throw new UsageError(`--skip: unknown part '${s}'`);
    }
  }
  let cfg;
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
  const T = (cfg.image_size / cfg.patch_size) ** 2;
  const timer = new Timer(k);
  const result: Record<string, unknown> = {
    adapter: gpu.name,
    fallback: gpu.isFallback,
    timestamps: timer.timestamps,
    config: { preset: o.preset, ...cfg, batch_size: o.batch_size },
  };
  console.log(
    `adapter: ${describeGpu(gpu)}; timing by ${
      timer.timestamps ? "timestamp queries" : "wall clock"
    }`,
  );
  console.log(
    `model: DiT-${o.preset}/${cfg.patch_size} on ${cfg.in_channels}×${cfg.image_size}², batch ${o.batch_size}, ${T} tokens`,
  );

  // (a) training step and (d) breakdown, (e) memory
  if (!skip.has("step")) {
    const n = Math.max(64, o.batch_size);
    const pixels = new Uint8Array(n * cfg.in_channels * cfg.image_size ** 2).map((_, i) =>
      (i * 2654435761) >>> 24
    );
    const labels = Int32Array.from({ length: n }, (_, i) => i % Math.max(1, cfg.num_classes));
    const data = new ArrayDataset(pixels, labels, cfg.in_channels, cfg.image_size, cfg.num_classes);
    const opts = {
      ...(gpu.isFallback ? CPU_DEFAULTS : GPU_DEFAULTS),
      batch_size: o.batch_size,
      log_every: 1000,
      train_steps: 1e9,
    };
    const before = k.allocatedBytes;
    const trainer = new Trainer(k, cfg, opts, data);
    const flat = trainer.model.layout.total * 4 * 5; // params, grads, Adam m and v, EMA
    const memory = flat + k.allocatedBytes - before;
    for (let i = 0; i < 3; i++) await trainer.trainStep();
    await k.device.queue.onSubmittedWorkDone();
    const ms: number[] = [];
    for (let r = 0; r < o.repeats; r++) {
      const t0 = performance.now();
      for (let i = 0; i < o.iters; i++) await trainer.trainStep();
      await k.device.queue.onSubmittedWorkDone();
      ms.push((performance.now() - t0) / o.iters);
    }
    const gpuMs = median(
      await timer.passes(Array.from({ length: 3 }, () => trainer.stepDispatches)),
    );
    const stepMs = median(ms);
    result.step = {
      ms: stepMs,
      gpu_ms: gpuMs,
      images_per_s: o.batch_size / (stepMs / 1e3),
      dispatches: trainer.dispatchCount,
      memory_bytes: memory,
    };
    console.log(
      `training step: ${stepMs.toFixed(2)} ms (GPU ${gpuMs.toFixed(2)} ms), ${
        (o.batch_size / (stepMs / 1e3)).toFixed(1)
      } images/s, ` +
        `${trainer.dispatchCount} dispatches, ${(memory / 2 ** 30).toFixed(2)} GiB allocated`,
    );
    if (!skip.has("breakdown")) {
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
      console.log(
        `  ${"kernel".padEnd(28)} ${"calls".padStart(5)} ${"ms".padStart(9)} ${
          "share".padStart(6)
        }`,
      );
      for (const [label, e] of rows.slice(0, 20)) {
        console.log(
          `  ${label.padEnd(28)} ${String(e.n).padStart(5)} ${e.ms.toFixed(3).padStart(9)} ${
            (100 * e.ms / total).toFixed(1).padStart(5)
          }%`,
        );
      }
      result.breakdown = rows.map(([label, e]) => ({ kernel: label, calls: e.n, ms: e.ms }));
    }
  }

  // (b) sampling
  if (!skip.has("sample")) {
    const { Model } = await import("../src/model/model.ts");
    const { initParams } = await import("../src/model/params.ts");
    const model = new Model(k, cfg, initParams(cfg, 0));
    const labels = Array.from({ length: o.batch_size }, (_, i) => i % Math.max(1, cfg.num_classes));
    const run = () =>
      generateImages(k, cfg, model.params, {
        labels,
        steps: o.sampling_steps,
        cfgScale: 3,
        batch: o.batch_size,
      });
    await run();
    const ms: number[] = [];
    for (let r = 0; r < Math.min(3, o.repeats); r++) {
      const t0 = performance.now();
      await run();
      ms.push(performance.now() - t0);
    }
    const ips = o.batch_size / (median(ms) / 1e3);
    result.sample = {
      steps: o.sampling_steps,
      cfg_scale: 3,
      images: o.batch_size,
      ms: median(ms),
      images_per_s: ips,
    };
    console.log(
      `\nsampling: ${o.sampling_steps} Euler steps, CFG 3, ${o.batch_size} images: ${
        median(ms).toFixed(1)
      } ms, ${ips.toFixed(1)} images/s`,
    );
  }

  // (c) linear kernel
  if (!skip.has("linear")) {
    const n = o.matmul_size;
    const shapes: LinearShape[] = [
      { name: `${n}³`, M: n, N: n, K: n, kind: "fwd" },
      ...modelShapes(o.batch_size, T, cfg.hidden_size, cfg.in_channels * cfg.patch_size ** 2),
    ];
    console.log(`\nlinear kernel (TFLOP/s, median of ${o.repeats}):`);
    console.log(
      `  ${"product".padEnd(12)} ${"M".padStart(7)} ${"N".padStart(6)} ${"K".padStart(7)} ${
        "GFLOP".padStart(8)
      } ${"TFLOP/s".padStart(8)}`,
    );
    const rows = [];
    for (const s of shapes) {
      const tf = await timeLinear(k, timer, s, o.repeats);
      const gf = 2 * s.M * s.N * s.K / 1e9;
      rows.push({ name: `${s.name} ${s.kind}`, M: s.M, N: s.N, K: s.K, tflops: tf });
      console.log(
        `  ${`${s.name} ${s.kind}`.padEnd(12)} ${String(s.M).padStart(7)} ${
          String(s.N).padStart(6)
        } ${String(s.K).padStart(7)} ${gf.toPrecision(3).padStart(8)} ${
          tf.toPrecision(3).padStart(8)
        }`,
      );
    }
    result.linear = rows;
  }
  console.log(`\nJSON: ${JSON.stringify(result)}`);
}

if (import.meta.main) await runMain(main);
