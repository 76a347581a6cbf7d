/// <reference lib="dom" />
/**
 * The page (web/index.html): generate from the shipped weights or a picked checkpoint, and train
 * the tiny preset live on the embedded Fashion-MNIST subset, through the browser library
 * (flowgpu.ts). The page's state is `globalThis.flowgpuPage`, for the console and the tests.
 */
import {
  CPU_DEFAULTS,
  createModel,
  decodeCheckpoint,
  defaultKernels,
  type DiTConfig,
  FASHION_MNIST_CLASSES,
  generateImages,
  getGpu,
  type Gpu,
  gridPixels,
  loadFashionMnistSubset,
  type Method,
  Model,
  NFE_PER_STEP,
  resolveConfig,
  SeededRng,
  shippedWeights,
  shippedWeightsUrl,
  Trainer,
  trainingCheckpointBytes,
  type TrainOptions,
  validateTrainOptions,
} from "./flowgpu.ts";

/** What the page holds; read by the tests through `globalThis.flowgpuPage`. */
interface PageState {
  status: "starting" | "ready" | "no-webgpu" | "error";
  adapter?: { name: string; fallback: boolean; features: string[]; limits: Record<string, number> };
  model?: { source: string; config: DiTConfig; kind: string; parameters: number };
  generating: boolean;
  /** Generations finished since the page loaded. */
  generations: number;
  /** Grid redraws while sampling (the grid as it forms), over all generations. */
  previews: number;
  lastGeneration?: { images: number; seconds: number; nfe: number };
  training: "idle" | "running" | "paused" | "done";
  /** Every training step's loss, in order (step i+1 at index i). */
  losses: number[];
  trainStep: number;
  /** Training sample grids drawn so far. */
  trainGrids: number;
  errors: string[];
}

const state: PageState = {
  status: "starting",
  generating: false,
  generations: 0,
  previews: 0,
  training: "idle",
  losses: [],
  trainStep: 0,
  trainGrids: 0,
  errors: [],
};
(globalThis as { flowgpuPage?: PageState }).flowgpuPage = state;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const el = {
  adapter: $("adapter"),
  nogpu: $("nogpu"),
  error: $("error"),
  modelStatus: $("model-status"),
  ckpt: $<HTMLInputElement>("ckpt"),
  genForm: $<HTMLFormElement>("gen-form"),
  genClass: $<HTMLSelectElement>("gen-class"),
  genCountLabel: $("gen-count-label"),
  genCount: $<HTMLInputElement>("gen-count"),
  genSteps: $<HTMLInputElement>("gen-steps"),
  genCfg: $<HTMLInputElement>("gen-cfg"),
  genSolver: $<HTMLSelectElement>("gen-solver"),
  genSeed: $<HTMLInputElement>("gen-seed"),
  genGo: $<HTMLButtonElement>("gen-go"),
  genStop: $<HTMLButtonElement>("gen-stop"),
  genProgress: $<HTMLProgressElement>("gen-progress"),
  genStatus: $("gen-status"),
  genCanvas: $<HTMLCanvasElement>("gen-canvas"),
  trainForm: $<HTMLFormElement>("train-form"),
  trainSteps: $<HTMLInputElement>("train-steps"),
  trainBatch: $<HTMLInputElement>("train-batch"),
  trainLr: $<HTMLInputElement>("train-lr"),
  trainSeed: $<HTMLInputElement>("train-seed"),
  trainSampleEvery: $<HTMLInputElement>("train-sample-every"),
  trainGo: $<HTMLButtonElement>("train-go"),
  trainPause: $<HTMLButtonElement>("train-pause"),
  trainDownload: $<HTMLButtonElement>("train-download"),
  trainUse: $<HTMLButtonElement>("train-use"),
  trainStatus: $("train-status"),
  lossCanvas: $<HTMLCanvasElement>("loss-canvas"),
  trainCanvas: $<HTMLCanvasElement>("train-canvas"),
  trainGrid: $("train-grid"),
  trainGridCaption: $("train-grid-caption"),
};

/** A user-facing error: shown on the page (and kept in state.errors), not thrown on. */
function showError(what: string, e: unknown): void {
  const msg = `${what}: ${(e as Error)?.message ?? e}`;
  state.errors.push(msg);
  el.error.textContent = msg;
  el.error.hidden = false;
}

function clearError(): void {
  el.error.hidden = true;
}

/** A number field's value, checked against its min/max; throws a message naming the field. */
function numberField(input: HTMLInputElement, name: string, integer = true): number {
  const v = Number(input.value);
  const min = input.min === "" ? -Infinity : Number(input.min);
  const max = input.max === "" ? Infinity : Number(input.max);
  if (input.value.trim() === "" || !Number.isFinite(v) || (integer && !Number.isInteger(v))) {
    throw new Error(`${name} must be ${integer ? "an integer" : "a number"}, got '${input.value}'`);
  }
  if (v < min || v > max) throw new Error(`${name} must be in [${min}, ${max}], got ${v}`);
  return v;
}

// ---- Drawing ----

/** Draw [N, C, H, W] images in [-1, 1] as a rows × cols grid, as `deno task generate` writes it. */
function drawGrid(
  canvas: HTMLCanvasElement,
  images: Float32Array,
  cfg: DiTConfig,
  rows: number,
  cols: number,
): void {
  const zoom = cfg.image_size < 64 ? 2 : 1; // as the generate task's PNG
  const g = gridPixels(
    images,
    { channels: cfg.in_channels, size: cfg.image_size },
    rows,
    cols,
    zoom,
  );
  if (canvas.width !== g.width || canvas.height !== g.height) {
    canvas.width = g.width;
    canvas.height = g.height;
    // Shown larger with crisp pixels, up to the column's width.
    const scale = Math.max(1, Math.min(3, Math.floor(540 / g.width)));
    canvas.style.width = `${g.width * scale}px`;
  }
  const rgba = new Uint8ClampedArray(g.width * g.height * 4);
  for (let i = 0, n = g.width * g.height; i < n; i++) {
    for (let c = 0; c < 3; c++) {
      rgba[4 * i + c] = g.pixels[i * g.channels + (g.channels === 1 ? 0 : c)];
    }
    rgba[4 * i + 3] = 255;
  }
  canvas.getContext("2d")!.putImageData(new ImageData(rgba, g.width, g.height), 0, 0);
}

/**
 * Ticks of a log axis over [lo, hi] (log10 units): 1-2-5 steps of each decade where that gives
 * at least three, else evenly spaced round values.
 */
function lossTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  for (let p = Math.floor(lo); p <= Math.ceil(hi); p++) {
    for (const m of [1, 2, 5]) {
      const v = Number((m * 10 ** p).toPrecision(6));
      if (Math.log10(v) >= lo && Math.log10(v) <= hi) out.push(v);
    }
  }
  if (out.length >= 3) return out;
  const a = 10 ** lo, b = 10 ** hi, raw = (b - a) / 4, e = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * e).find((s) => s >= raw)!;
  const lin: number[] = [];
  for (let v = Math.ceil(a / step) * step; v <= b; v += step) lin.push(Number(v.toPrecision(6)));
  return lin;
}

/** The loss curve: every step (light) and an exponential moving average (dark), log-scale y. */
function drawLoss(canvas: HTMLCanvasElement, losses: number[]): void {
  const ctx = canvas.getContext("2d")!;
  const W = canvas.width, H = canvas.height;
  const L = 52, R = 12, T = 12, B = 34;
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, W, H);
  const pts = losses.filter((v) => v > 0 && Number.isFinite(v));
  ctx.font = "12px system-ui, sans-serif";
  ctx.fillStyle = "#5b6475";
  if (pts.length === 0) {
    ctx.fillText("the loss of each step appears here while training", L, H / 2);
    return;
  }
  let lo = Math.log10(Math.min(...pts)), hi = Math.log10(Math.max(...pts));
  if (hi - lo < 0.1) [lo, hi] = [lo - 0.05, hi + 0.05];
  const n = Math.max(losses.length, 2);
  const x = (i: number) => L + (W - L - R) * (i / (n - 1));
  const y = (v: number) => T + (H - T - B) * (1 - (Math.log10(v) - lo) / (hi - lo));
  ctx.strokeStyle = "#e1e1e1";
  ctx.lineWidth = 1;
  ctx.textAlign = "right";
  ctx.textBaseline = "middle";
  for (const v of lossTicks(lo, hi)) {
    ctx.beginPath();
    ctx.moveTo(L, y(v));
    ctx.lineTo(W - R, y(v));
    ctx.stroke();
    ctx.fillText(String(Number(v.toPrecision(3))), L - 6, y(v));
  }
  ctx.textAlign = "center";
  ctx.textBaseline = "top";
  const stepTick = Math.max(1, 10 ** Math.floor(Math.log10(n / 2)));
  const every = n / stepTick > 10 ? stepTick * (n / stepTick > 25 ? 5 : 2) : stepTick;
  for (let s = every; s <= losses.length; s += every) ctx.fillText(String(s), x(s - 1), H - B + 6);
  ctx.fillText("step", (L + W - R) / 2, H - 15);
  const line = (vals: number[], color: string, width: number) => {
    ctx.strokeStyle = color;
    ctx.lineWidth = width;
    ctx.beginPath();
    vals.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
    ctx.stroke();
  };
  const clamp = losses.map((v) => (v > 0 && Number.isFinite(v) ? v : 10 ** hi));
  line(clamp, "#aec7e8", 1);
  let ema = clamp[0];
  const beta = 0.9;
  line(clamp.map((v) => (ema = beta * ema + (1 - beta) * v)), "#1f77b4", 2);
}

// ---- Models ----

let gpu: Gpu | undefined;
/** The model the Generate panel samples from. */
let genModel: Model | undefined;
/** A model loaded from a checkpoint (its buffer is freed when another one replaces it). */
let loadedModel: Model | undefined;

function classNames(cfg: DiTConfig): string[] {
  const fmnist = cfg.num_classes === 10 && cfg.in_channels === 1 && cfg.image_size === 28;
  return Array.from(
    { length: cfg.num_classes },
    (_, i) => fmnist ? FASHION_MNIST_CLASSES[i] : `class ${i}`,
  );
}

/** Fill the class menu for `cfg` (keeping the choice where it still exists). */
function setClasses(cfg: DiTConfig): void {
  const prev = el.genClass.value;
  el.genClass.replaceChildren();
  const add = (value: string, text: string) => el.genClass.add(new Option(text, value));
  if (cfg.num_classes === 0) add("uncond", "unconditional model");
  else {
    add("grid", "every class (a row each)");
    add("random", "random classes");
    classNames(cfg).forEach((n, i) => add(String(i), `${i}: ${n}`));
  }
  if ([...el.genClass.options].some((o) => o.value === prev)) el.genClass.value = prev;
  updateCountLabel();
}

function updateCountLabel(): void {
  el.genCountLabel.textContent = el.genClass.value === "grid" ? "Images per class" : "Images";
}

function describeModel(model: Model, source: string): string {
  const c = model.cfg;
  const params = model.layout.total;
  return `${source}: DiT hidden ${c.hidden_size}, depth ${c.depth}, ${c.num_heads} heads, ` +
    `patch ${c.patch_size}; ${c.image_size}×${c.image_size}×${c.in_channels}, ` +
    `${c.num_classes || "no"} classes; ${(params / 1e6).toFixed(2)}M parameters ` +
    `(${model.kind === "ema" ? "EMA" : "raw"} weights)`;
}

function useModel(model: Model, source: string): void {
  genModel = model;
  state.model = {
    source,
    config: model.cfg,
    kind: model.kind,
    parameters: model.layout.total,
  };
  el.modelStatus.textContent = describeModel(model, source);
  setClasses(model.cfg);
  el.genGo.disabled = state.generating;
}

/** Load a checkpoint's bytes into the Generate panel (EMA weights when it has them). */
async function loadCheckpoint(bytes: Uint8Array, source: string): Promise<void> {
  const c = decodeCheckpoint(bytes);
  const ema = c.ema !== undefined;
  const model = new Model(await kernels(), c.cfg, {
    weights: ema ? c.ema : c.params,
    kind: ema ? "ema" : c.kind ?? "raw",
  });
  if (state.generating) await waitGeneration();
  loadedModel?.params.buffer.destroy();
  loadedModel = model;
  useModel(model, source);
}

const kernels = defaultKernels;

// ---- Generate ----

let stopRequested = false;
let generation: Promise<void> = Promise.resolve();
const waitGeneration = () => generation.catch(() => {});

class Stopped extends Error {}

/** The labels and grid of the request, as `deno task generate` plans them. */
function plan(cfg: DiTConfig, choice: string, count: number, seed: number) {
  const K = cfg.num_classes;
  if (choice === "grid") {
    return {
      labels: Array.from({ length: K * count }, (_, i) => Math.floor(i / count)),
      rows: K,
      cols: count,
    };
  }
  const rng = new SeededRng(seed ^ 0x1abe1);
  const labels = Array.from(
    { length: count },
    () => (K === 0 ? 0 : choice === "random" ? rng.int(K) : Number(choice)),
  );
  const cols = Math.ceil(Math.sqrt(count));
  return { labels, rows: Math.ceil(count / cols), cols };
}

async function generate(): Promise<void> {
  const model = genModel;
  if (!model) return;
  const cfg = model.cfg;
  const count = numberField(el.genCount, el.genCountLabel.textContent ?? "Images");
  const steps = numberField(el.genSteps, "Steps");
  const cfgScale = numberField(el.genCfg, "CFG scale", false);
  const seed = numberField(el.genSeed, "Seed");
  const method = el.genSolver.value as Method;
  const { labels, rows, cols } = plan(cfg, el.genClass.value, count, seed);
  const N = labels.length, per = cfg.in_channels * cfg.image_size ** 2;
  if (N > 4096) throw new Error(`${N} images is more than this page draws (4096)`);
  const shown = new Float32Array(N * per).fill(1); // cells not yet started: white
  drawGrid(el.genCanvas, shown, cfg, rows, cols);
  const batch = 64, batches = Math.ceil(N / batch);
  const t0 = performance.now();
  let lastDraw = t0;
  const fixed = method !== "dopri5";
  const drawEvery = Math.max(1, Math.round(steps / 10));
  const status = (done: number, step: number, b: number, t: number) => {
    const s = (performance.now() - t0) / 1000;
    const stepText = fixed ? `step ${step}/${steps}` : `t = ${t.toFixed(3)}`;
    el.genStatus.textContent = `${stepText}, batch ${b}/${batches} · ` +
      `${done.toFixed(1)}/${N} images · ${(done / s).toFixed(2)} images/s · ${s.toFixed(1)} s`;
    el.genProgress.value = done / N;
  };
  const { images, nfe } = await generateImages(model, {
    labels,
    steps,
    cfgScale,
    method,
    seed,
    batch,
    onStep: async (s) => {
      if (stopRequested) throw new Stopped("stopped");
      const done = s.first + s.count * s.t;
      status(done, s.step, Math.floor(s.first / batch) + 1, s.t);
      // The grid as it forms: the batch's state x_t, drawn every few steps. The read-back waits
      // for the GPU (the solver only submits), so it also keeps the progress line honest.
      const due = fixed ? s.step % drawEvery === 0 : performance.now() - lastDraw > 200;
      if (due || s.t >= 1) {
        shown.set(await s.read(), s.first * per);
        drawGrid(el.genCanvas, shown, cfg, rows, cols);
        state.previews++;
        lastDraw = performance.now();
      }
    },
  });
  drawGrid(el.genCanvas, images, cfg, rows, cols);
  const seconds = (performance.now() - t0) / 1000;
  el.genProgress.value = 1;
  const guided = cfg.num_classes > 0 && cfgScale !== 1;
  el.genStatus.textContent = `${N} images in ${seconds.toFixed(2)} s · ` +
    `${(N / seconds).toFixed(2)} images/s · ${nfe} model evaluations` +
    (fixed ? ` (${NFE_PER_STEP[method as keyof typeof NFE_PER_STEP]} per step)` : "") +
    (guided ? ", each a guided pair" : "");
  state.lastGeneration = { images: N, seconds, nfe };
  state.generations++;
}

el.genClass.addEventListener("change", updateCountLabel);
el.genForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (state.generating || !genModel) return;
  clearError();
  state.generating = true;
  stopRequested = false;
  el.genGo.disabled = true;
  el.genStop.disabled = false;
  generation = generate()
    .catch((e) => {
      if (e instanceof Stopped) el.genStatus.textContent += " · stopped";
      else showError("generate", e);
    })
    .finally(() => {
      state.generating = false;
      el.genGo.disabled = !genModel;
      el.genStop.disabled = true;
    });
});
el.genStop.addEventListener("click", () => (stopRequested = true));

el.ckpt.addEventListener("change", async () => {
  const file = el.ckpt.files?.[0];
  if (!file) return;
  clearError();
  el.modelStatus.textContent = `loading ${file.name}…`;
  try {
    await loadCheckpoint(new Uint8Array(await file.arrayBuffer()), file.name);
  } catch (e) {
    el.modelStatus.textContent = genModel
      ? describeModel(genModel, state.model!.source)
      : "No model loaded.";
    showError(file.name, e);
  }
});

// ---- Train ----

let trainer: Trainer | undefined;
let trainOpts: TrainOptions | undefined;
let trainCfg: DiTConfig | undefined;
let pauseRequested = false;

/** The training options from the form over the CPU profile (the tiny preset's defaults). */
function trainOptions(): TrainOptions {
  return validateTrainOptions({
    ...CPU_DEFAULTS,
    preset: "tiny",
    dataset: "default",
    hflip: false,
    train_steps: numberField(el.trainSteps, "Steps"),
    batch_size: numberField(el.trainBatch, "Batch"),
    lr: numberField(el.trainLr, "Learning rate", false),
    seed: numberField(el.trainSeed, "Seed"),
    sample_every: numberField(el.trainSampleEvery, "Grid every"),
  });
}

/** An EMA sample grid: one row per class, 4 images each (fixed seed: rows are comparable). */
async function trainGrid(): Promise<void> {
  if (!trainer || !trainOpts || !trainCfg) return;
  const cols = 4, K = trainCfg.num_classes;
  const labels = Array.from({ length: K * cols }, (_, i) => Math.floor(i / cols));
  const { images } = await generateImages(trainer.ema, {
    labels,
    steps: trainOpts.num_sampling_steps,
    cfgScale: trainOpts.cfg_scale,
    seed: 0,
  });
  drawGrid(el.trainCanvas, images, trainCfg, K, cols);
  el.trainGrid.hidden = false;
  el.trainGridCaption.textContent = `EMA samples at step ${trainer.step}: one row per class ` +
    `(${trainOpts.num_sampling_steps} Euler steps, CFG ${trainOpts.cfg_scale})`;
  state.trainGrids++;
}

async function train(): Promise<void> {
  if (!trainer) {
    const opts = trainOptions();
    el.trainStatus.textContent = "loading the embedded Fashion-MNIST subset…";
    const data = await loadFashionMnistSubset();
    // As `deno task train` builds it (tasks/train.ts modelConfig), so the runs match.
    const cfg = resolveConfig({
      preset: "tiny",
      image_size: data.imageSize,
      in_channels: data.channels,
      num_classes: data.numClasses,
      t_scale: opts.t_scale,
    });
    trainer = new Trainer(
      await createModel(cfg, { seed: opts.seed, kernels: await kernels() }),
      opts,
      data,
    );
    trainOpts = opts;
    trainCfg = cfg;
    state.losses = [];
    for (const f of [el.trainSteps, el.trainBatch, el.trainLr, el.trainSeed]) f.disabled = true;
  }
  const t = trainer, opts = trainOpts!;
  const total = opts.train_steps;
  const t0 = performance.now(), s0 = t.step;
  let lastUi = 0;
  const take = (ms: { step: number; loss: number }[]) => {
    for (const m of ms) state.losses[m.step - 1] = m.loss;
  };
  const show = () => {
    const s = (performance.now() - t0) / 1000;
    const rate = (t.step - s0) / Math.max(s, 1e-3);
    const last = state.losses.length ? state.losses[state.losses.length - 1] : NaN;
    el.trainStatus.textContent = `step ${t.step}/${total} · ${rate.toFixed(1)} steps/s · ` +
      `${(rate * opts.batch_size).toFixed(rate * opts.batch_size < 10 ? 1 : 0)} images/s · loss ${
        Number.isFinite(last) ? last.toFixed(4) : "…"
      }`;
    state.trainStep = t.step;
    drawLoss(el.lossCanvas, state.losses);
  };
  while (t.step < total && !pauseRequested) {
    await t.trainStep();
    if (opts.sample_every > 0 && t.step % opts.sample_every === 0 && t.step < total) {
      take(await t.flushMetrics());
      await trainGrid();
    }
    if (performance.now() - lastUi > 250) {
      take(t.takeMetrics());
      show();
      lastUi = performance.now();
    }
  }
  take(await t.flushMetrics());
  show();
  if (t.step >= total && opts.sample_every > 0) await trainGrid();
  state.trainStep = t.step;
}

el.trainForm.addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (state.training === "running") return;
  clearError();
  if (state.training === "done") {
    // A new run with the form's options.
    trainer = undefined;
    for (const f of [el.trainSteps, el.trainBatch, el.trainLr, el.trainSeed]) f.disabled = false;
  }
  state.training = "running";
  pauseRequested = false;
  el.trainGo.disabled = true;
  el.trainPause.disabled = false;
  el.trainGo.textContent = "Train";
  train()
    .then(() => {
      state.training = trainer && trainer.step >= trainOpts!.train_steps ? "done" : "paused";
      el.trainGo.textContent = state.training === "done" ? "Train a new model" : "Resume";
    })
    .catch((e) => {
      state.training = "paused";
      showError("train", e);
    })
    .finally(() => {
      el.trainGo.disabled = false;
      el.trainPause.disabled = true;
      el.trainDownload.disabled = !trainer;
      el.trainUse.disabled = !trainer;
    });
});
el.trainPause.addEventListener("click", () => (pauseRequested = true));

el.trainDownload.addEventListener("click", async () => {
  if (!trainer) return;
  try {
    const bytes = await trainingCheckpointBytes(trainer, trainCfg, trainOpts);
    const url = URL.createObjectURL(new Blob([bytes as Uint8Array<ArrayBuffer>]));
    const a = document.createElement("a");
    a.href = url;
    a.download = `flowgpu-tiny-fashion-mnist-step${trainer.step}.safetensors`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  } catch (e) {
    showError("download", e);
  }
});

el.trainUse.addEventListener("click", async () => {
  if (!trainer) return;
  if (state.generating) await waitGeneration();
  useModel(trainer.ema, `trained here (step ${trainer.step}, live)`);
});

// ---- Start ----

async function start(): Promise<void> {
  drawLoss(el.lossCanvas, []);
  if (!("gpu" in navigator)) {
    state.status = "no-webgpu";
    el.adapter.textContent = "No WebGPU.";
    el.nogpu.hidden = false;
    el.nogpu.innerHTML =
      "<strong>This browser has no WebGPU</strong> (<code>navigator.gpu</code> " +
      "is missing), which this page needs to run its kernels. Use a current Chrome or Edge " +
      "(on Linux: start it with <code>--enable-unsafe-webgpu</code> or enable " +
      "<code>chrome://flags/#enable-unsafe-webgpu</code>), Safari 26, or Firefox 141 or later " +
      "on Windows; and open the page from <code>https://</code> or <code>http://localhost</code>.";
    return;
  }
  try {
    gpu = await getGpu();
  } catch (e) {
    state.status = "no-webgpu";
    el.adapter.textContent = "No WebGPU adapter.";
    el.nogpu.hidden = false;
    el.nogpu.textContent = `WebGPU is present but gave no adapter: ${(e as Error).message}`;
    return;
  }
  const l = gpu.device.limits;
  state.adapter = {
    name: gpu.name,
    fallback: gpu.isFallback,
    features: [...gpu.features],
    limits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  };
  el.adapter.textContent = `WebGPU adapter: ${gpu.name.trim() || "unnamed"}` +
    (gpu.isFallback ? " (a software fallback: slow, keep things small)" : "") +
    ` · shader-f16 ${gpu.features.has("shader-f16") ? "available" : "not available"}` +
    ` · storage buffers up to ${(l.maxStorageBufferBindingSize / 2 ** 20).toFixed(0)} MiB` +
    ` · ${l.maxComputeWorkgroupStorageSize / 1024} KiB workgroup memory`;
  state.status = "ready";
  el.trainGo.disabled = false;
  if (!gpu.isFallback) el.trainBatch.value = "64"; // the CPU profile's 16 is for software adapters
  const names = await shippedWeights();
  if (names.includes("fashion-mnist-small")) {
    const url = shippedWeightsUrl("fashion-mnist-small");
    el.modelStatus.textContent = "loading the shipped weights fashion-mnist-small…";
    try {
      const r = await fetch(url);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      await loadCheckpoint(new Uint8Array(await r.arrayBuffer()), "fashion-mnist-small (shipped)");
    } catch (e) {
      el.modelStatus.textContent = "No model loaded: pick a checkpoint.";
      showError(`shipped weights ${url.pathname}`, e);
    }
  } else {
    el.modelStatus.textContent = "No shipped weights in this build: pick a checkpoint " +
      "(deno task train writes runs/…/checkpoints/final.safetensors), or train one below.";
  }
}

addEventListener("unhandledrejection", (e) => showError("error", e.reason));
start().catch((e) => {
  state.status = "error";
  showError("start", e);
});
