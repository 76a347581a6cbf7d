/**
 * `deno task eval`: sample N class-balanced images from a checkpoint and score them against the
 * Fashion-MNIST test set with the feature classifier: Fréchet distance in its penultimate
 * features (FD), its accuracy on the requested classes, k-NN precision and recall (k = 3), and the
 * same scores for N real training images (the floor). `--sweep` runs a grid of solvers × steps ×
 * CFG scales into one table and a plot of FD against NFE. Run with --help for the flags.
 */
import { join } from "node:path";
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import { decodeCheckpoint, readSource } from "../src/io/model_io.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { isShippedName, resolveWeights } from "../src/io/weights.ts";
import { loadFashionMnistTest, loadFashionMnistTrain, toFloat } from "../src/io/eval_data.ts";
import { linePlotPng } from "../src/io/plot.ts";
import { Classifier, decodeClassifier } from "../src/eval/classifier.ts";
import {
  balancedLabels,
  balancedSubset,
  gather,
  reference,
  Sampler,
  scoreImages,
  type Scores,
} from "../src/eval/evaluate.ts";
import type { Method } from "../src/flow/sample.ts";
import { type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";

const SOLVERS = ["euler", "heun", "midpoint", "rk4", "dopri5"];

/** Every flag of this task (snake_case; kebab-case accepted too), with its default below. */
const SPECS: Record<string, FlagSpec> = {
  checkpoint: {
    kind: "string",
    help:
      "checkpoint .safetensors, a run directory, a URL, or a shipped name (fashion-mnist-small)",
  },
  num_samples: {
    kind: "int",
    help: "images to generate (class-balanced) and real images for the floor",
  },
  num_steps: { kind: "int", help: "solver steps (fixed-step solvers)" },
  solver: { kind: "string", help: SOLVERS.join(", "), choices: SOLVERS },
  cfg_scale: { kind: "number", help: "classifier-free guidance scale (1 = no guidance)" },
  shift: { kind: "number", help: "SD3 time shift on sigma = 1 - t" },
  atol: { kind: "number", help: "dopri5 absolute tolerance" },
  rtol: { kind: "number", help: "dopri5 relative tolerance" },
  seed: { kind: "int", help: "random seed of the samples' noise and of the floor's images" },
  batch: { kind: "int", help: "images per batched forward while sampling" },
  data: {
    kind: "string",
    help:
      "folder with t10k-images/labels-idx*-ubyte(.gz) (and train-* for the floor); default Debian's",
  },
  classifier: { kind: "string", help: "feature classifier: a shipped name or a .safetensors path" },
  no_ema: { kind: "boolean", help: "use the raw weights instead of the EMA weights" },
  no_floor: { kind: "boolean", help: "skip the floor (real training images)" },
  sweep: { kind: "boolean", help: "score a grid of --sweep-solvers × --sweep-steps × --sweep-cfg" },
  sweep_solvers: { kind: "string", help: "comma list of solvers for --sweep" },
  sweep_steps: { kind: "string", help: "comma list of step counts for --sweep (dopri5: unused)" },
  sweep_cfg: {
    kind: "string",
    help: "comma list of CFG scales for --sweep (default: --cfg-scale)",
  },
  sweep_file: {
    kind: "string",
    help: 'JSON grid {"solvers": [...], "steps": [...], "cfg": [...]} (implies --sweep)',
  },
  plot: { kind: "string", help: "PNG of FD against NFE per solver (with --sweep)" },
  json: { kind: "string", help: "also write the JSON result to this file" },
};
const DEFAULTS = {
  num_samples: 10000,
  num_steps: 50,
  solver: "euler",
  cfg_scale: 3.0,
  shift: 1,
  atol: 1e-5,
  rtol: 1e-5,
  seed: 0,
  batch: 250,
  classifier: "fashion-mnist-classifier",
  sweep_solvers: "euler,heun",
  sweep_steps: "10,25,50",
  plot: "eval_sweep.png",
};
type Opts = typeof DEFAULTS & {
  checkpoint?: string;
  data?: string;
  no_ema?: boolean;
  no_floor?: boolean;
  sweep?: boolean;
  sweep_cfg?: string;
  sweep_file?: string;
  json?: string;
};
const USAGE = "Usage: deno task eval --checkpoint PATH|NAME [options]\n\n" +
  "Scores generated images against the Fashion-MNIST test set with the feature classifier\n" +
  "(weights/fashion-mnist-classifier.safetensors): FD, class accuracy, precision, recall (k = 3),\n" +
  "and the same for real training images (the floor). Prints a table and a JSON line.\n\n" +
  "Examples:\n" +
  "  deno task eval --checkpoint fashion-mnist-small\n" +
  "  deno task eval --checkpoint runs/latest --num-samples 2000 --solver heun --num-steps 25\n" +
  "  deno task eval --checkpoint runs/latest --sweep --sweep-solvers euler,heun " +
  "--sweep-steps 10,25,50 --sweep-cfg 1,3";

/** One sampling configuration. */
interface Setting {
  solver: string;
  steps: number;
  cfg: number;
}

function list(flag: string, s: string, num: boolean): (string | number)[] {
  const parts = s.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (!parts.length) throw new UsageError(`--${flag} is empty`);
  if (!num) return parts;
  return parts.map((p) => {
    const v = Number(p);
    if (!Number.isFinite(v)) throw new UsageError(`--${flag}: '${p}' is not a number`);
    return v;
  });
}

/** The settings to score: one, or the sweep grid (from flags or a JSON file). */
async function settings(o: Opts): Promise<Setting[]> {
  if (!o.sweep && !o.sweep_file) {
    return [{ solver: o.solver, steps: o.num_steps, cfg: o.cfg_scale }];
  }
  let solvers = list("sweep-solvers", o.sweep_solvers, false) as string[];
  let steps = list("sweep-steps", o.sweep_steps, true) as number[];
  let cfgs = o.sweep_cfg ? list("sweep-cfg", o.sweep_cfg, true) as number[] : [o.cfg_scale];
  if (o.sweep_file) {
    let g: Record<string, unknown>;
    try {
      g = JSON.parse(await Deno.readTextFile(o.sweep_file));
    } catch (e) {
      throw new UsageError(`--sweep-file ${o.sweep_file}: ${(e as Error).message}`);
    }
    const arr = (k: string) => {
      const v = g[k];
      if (v === undefined) return undefined;
      if (!Array.isArray(v) || !v.length) {
        throw new UsageError(`--sweep-file: "${k}" must be a non-empty array`);
      }
      return v;
    };
    for (const key of Object.keys(g)) {
      if (!["solvers", "steps", "cfg", "cfg_scales"].includes(key)) {
        throw new UsageError(`--sweep-file: unknown key "${key}" (solvers, steps, cfg)`);
      }
    }
    solvers = (arr("solvers") ?? solvers).map(String);
    steps = (arr("steps") ?? steps).map(Number);
    cfgs = (arr("cfg") ?? arr("cfg_scales") ?? cfgs).map(Number);
  }
  for (const s of solvers) {
    if (!SOLVERS.includes(s)) {
      throw new UsageError(`sweep solver '${s}' is not one of ${SOLVERS.join(", ")}`);
    }
  }
  for (const s of steps) {
    if (!(Number.isInteger(s) && s > 0)) {
      throw new UsageError(`sweep steps must be positive integers, got ${s}`);
    }
  }
  for (const c of cfgs) {
    if (!Number.isFinite(c)) throw new UsageError(`sweep CFG scale ${c} is not a number`);
  }
  const out: Setting[] = [];
  for (const solver of solvers) {
    // An adaptive solver picks its own steps: one run per CFG scale.
    for (const st of solver === "dopri5" ? [0] : steps) {
      for (const cfg of cfgs) out.push({ solver, steps: st, cfg });
    }
  }
  return out;
}

/** A checkpoint argument → something readSource reads (shipped names, run directories). */
async function resolveCheckpoint(arg: string): Promise<string> {
  if (isShippedName(arg)) return resolveWeights(arg);
  if (/^(https?|file):/.test(arg)) return arg;
  const st = await Deno.stat(arg).catch(() => undefined);
  if (!st) throw new UsageError(`--checkpoint ${arg}: no such file or directory`);
  if (!st.isDirectory) return arg;
  for (const p of [join(arg, "checkpoints", "final.safetensors"), join(arg, "final.safetensors")]) {
    if (await Deno.stat(p).catch(() => undefined)) return p;
  }
  throw new UsageError(
    `--checkpoint ${arg}: no checkpoints/final.safetensors in that run directory`,
  );
}

async function readNamed(flag: string, arg: string, path: string): Promise<Uint8Array> {
  try {
    return await readSource(path);
  } catch (e) {
    const hint = isShippedName(arg) ? ` (shipped weights ${arg} are not in weights/)` : "";
    throw new Error(`--${flag} ${arg}: ${(e as Error).message}${hint}`);
  }
}

/** Progress: a rewritten line on a terminal, else one line per update at most once a second. */
function progress(label: string): (done: number, total: number) => void {
  const tty = Deno.stdout.isTerminal(), enc = new TextEncoder();
  const t0 = performance.now();
  let last = -Infinity;
  return (done, total) => {
    const now = performance.now();
    if (done < total && now - last < 1000) return;
    last = now;
    const s = (now - t0) / 1000, rate = done / Math.max(s, 1e-9);
    const eta = (total - done) / Math.max(rate, 1e-9);
    const line = `${label}: ${done}/${total} images  ${rate.toFixed(1)} img/s  ` +
      (done < total ? `ETA ${fmtTime(eta)}` : `${fmtTime(s)}`);
    if (tty) {
      Deno.stdout.writeSync(enc.encode(`\r${line}\x1b[K${done === total ? "\n" : ""}`));
    } else console.log(line);
  };
}

function fmtTime(s: number): string {
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

const pct = (v: number | undefined) => v === undefined ? "-" : `${(100 * v).toFixed(2)}%`;
const num = (v: number, d = 3) => v.toFixed(d);

/** Rows of cells → aligned text (first column left, others right). */
function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((s, c) => c === 0 ? s.padEnd(w[c]) : s.padStart(w[c])).join("  "))
    .join("\n");
}

function rounded(s: Scores | undefined) {
  if (!s) return undefined;
  const r = (v: number) => Number(v.toPrecision(6));
  return {
    n: s.n,
    fd: r(s.fd),
    ...(s.accuracy !== undefined ? { accuracy: r(s.accuracy) } : {}),
    precision: r(s.precision),
    recall: r(s.recall),
  };
}

async function main() {
  const { values, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(helpText(USAGE, SPECS, DEFAULTS));
    return;
  }
  const o = { ...DEFAULTS, ...values } as Opts;
  if (!o.checkpoint) {
    throw new UsageError(
      "--checkpoint is required (a .safetensors file, a run directory, or fashion-mnist-small)",
    );
  }
  for (const key of ["num_samples", "num_steps", "batch"] as const) {
    if (!(Number(o[key]) > 0)) throw new UsageError(`--${key} must be positive, got ${o[key]}`);
  }
  const grid = await settings(o);
  const ckptPath = await resolveCheckpoint(o.checkpoint);
  const clfPath = resolveWeights(o.classifier);
  const ckpt = decodeCheckpoint(await readNamed("checkpoint", o.checkpoint, ckptPath));
  const clfWeights = decodeClassifier(
    await readNamed("classifier", o.classifier, clfPath),
    o.classifier,
  );
  const cfg = ckpt.cfg, K = cfg.num_classes;
  const D = cfg.in_channels * cfg.image_size ** 2, widths = clfWeights.info.widths;
  if (D !== widths[0]) {
    throw new UsageError(
      `the model makes ${cfg.in_channels}×${cfg.image_size}×${cfg.image_size} images; the ` +
        `classifier takes ${widths[0]} values (1×28×28 Fashion-MNIST)`,
    );
  }
  if (K > widths[widths.length - 1]) {
    throw new UsageError(`the model has ${K} classes, the classifier ${widths.at(-1)}`);
  }
  const testDs = await loadFashionMnistTest(o.data);
  const test = toFloat(testDs);
  if (testDs.pixels.length / testDs.length !== D) {
    throw new UsageError(`the test images are not ${cfg.in_channels}×${cfg.image_size}²`);
  }

  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const N = o.num_samples;
  const useEma = !o.no_ema && ckpt.ema !== undefined;
  // Shipped weights hold one set (exported EMA weights) under the model's names: "model".
  const which = useEma ? "EMA" : ckpt.ema ? "raw" : "model";
  console.log(`adapter: ${describeGpu(gpu)}`);
  console.log(
    `checkpoint ${ckptPath} (${which} weights): ${K > 0 ? `${K} classes` : "unconditional"}, ` +
      `D=${cfg.hidden_size} depth ${cfg.depth} patch ${cfg.patch_size}`,
  );
  const acc = clfWeights.info.test_accuracy;
  console.log(
    `classifier ${o.classifier}: MLP ${widths.join("→")}` +
      (acc !== undefined ? `, test accuracy ${pct(acc)}` : ""),
  );
  const t0 = performance.now();
  const clf = new Classifier(k, clfWeights);
  const ref = await reference(clf, test.images);
  console.log(`reference: ${ref.n} test images (${testDs.length === 10000 ? "t10k" : "--data"})`);

  let floor: Scores | undefined;
  if (!o.no_floor) {
    const trainDs = await loadFashionMnistTrain(o.data);
    const train = toFloat(trainDs);
    const n = Math.min(N, trainDs.length);
    const idx = balancedSubset(train.labels, trainDs.numClasses, n, o.seed ^ 0xf100);
    const labels = Array.from(idx, (i) => train.labels[i]);
    floor = await scoreImages(
      k,
      clf,
      ref,
      gather(train.images, D, idx),
      K > 0 ? labels : undefined,
    );
    console.log(
      `floor: ${n} real training images${n < N ? ` (all there are of ${trainDs.length})` : ""}: ` +
        `FD ${num(floor.fd)}`,
    );
  }

  const sampler = new Sampler(k, cfg, useEma ? ckpt.ema! : ckpt.params);
  const labels = balancedLabels(N, K);
  const results: (Setting & { nfe: number; seconds: number; scores: Scores })[] = [];
  for (const [i, s] of grid.entries()) {
    const name = `${s.solver}${s.solver === "dopri5" ? "" : ` ${s.steps} steps`}` +
      (K > 0 ? ` CFG ${s.cfg}` : "");
    const label = grid.length > 1 ? `[${i + 1}/${grid.length}] ${name}` : `sampling (${name})`;
    const ts = performance.now();
    const { images, nfe } = await sampler.generate({
      labels,
      steps: s.steps || o.num_steps,
      cfgScale: s.cfg,
      method: s.solver as Method,
      shift: o.shift,
      atol: o.atol,
      rtol: o.rtol,
      seed: o.seed,
      batch: o.batch,
      onProgress: progress(label),
    });
    const seconds = (performance.now() - ts) / 1000;
    const scores = await scoreImages(k, clf, ref, images, K > 0 ? labels : undefined);
    results.push({ ...s, nfe, seconds, scores });
    if (grid.length > 1) {
      console.log(
        `  FD ${num(scores.fd)}  accuracy ${pct(scores.accuracy)}  precision ` +
          `${num(scores.precision)}  recall ${num(scores.recall)}`,
      );
    }
  }
  const total = (performance.now() - t0) / 1000;

  console.log();
  if (grid.length === 1) {
    const r = results[0];
    const head = ["", `samples (${N})`, ...(floor ? [`floor (${floor.n} real)`] : [])];
    const row = (name: string, f: (s: Scores) => string) => [
      name,
      f(r.scores),
      ...(floor ? [f(floor)] : []),
    ];
    const rows = [head, row("FD", (s) => num(s.fd))];
    if (K > 0) rows.push(row("class accuracy", (s) => pct(s.accuracy)));
    rows.push(row("precision (k=3)", (s) => num(s.precision)));
    rows.push(row("recall (k=3)", (s) => num(s.recall)));
    console.log(table(rows));
    console.log(
      `${r.solver}${r.solver === "dopri5" ? "" : ` ${r.steps} steps`}, NFE ${num(r.nfe, 1)}` +
        (K > 0 ? `, CFG ${r.cfg}` : "") + `, shift ${o.shift}, seed ${o.seed}; sampling ` +
        `${fmtTime(r.seconds)} (${(N / r.seconds).toFixed(1)} img/s), total ${fmtTime(total)}`,
    );
  } else {
    const rows = [[
      "solver",
      "steps",
      "CFG",
      "NFE",
      "FD",
      "accuracy",
      "precision",
      "recall",
      "time",
    ]];
    for (const r of results) {
      rows.push([
        r.solver,
        r.solver === "dopri5" ? "-" : String(r.steps),
        K > 0 ? String(r.cfg) : "-",
        num(r.nfe, 1),
        num(r.scores.fd),
        pct(r.scores.accuracy),
        num(r.scores.precision),
        num(r.scores.recall),
        fmtTime(r.seconds),
      ]);
    }
    if (floor) {
      rows.push([
        "floor (real)",
        "-",
        "-",
        "-",
        num(floor.fd),
        pct(floor.accuracy),
        num(floor.precision),
        num(floor.recall),
        "-",
      ]);
    }
    console.log(table(rows));
    const series = new Map<string, [number, number][]>();
    for (const r of results) {
      const key = r.solver +
        (K > 0 && new Set(results.map((x) => x.cfg)).size > 1 ? ` CFG ${r.cfg}` : "");
      if (!series.has(key)) series.set(key, []);
      series.get(key)!.push([r.nfe, r.scores.fd]);
    }
    for (const pts of series.values()) pts.sort((a, b) => a[0] - b[0]);
    const png = await linePlotPng(
      [...series.entries()].map(([name, points]) => ({ name, points })),
      {
        title: `FD against NFE (${N} samples${K > 0 ? "" : ", unconditional"})`,
        xLabel: "NFE",
        yLabel: "FD",
        logX: true,
      },
    );
    await writeFileAtomic(o.plot, png);
    console.log(`plot: ${o.plot}   total ${fmtTime(total)}`);
  }
  const setting = (r: typeof results[number]) => ({
    solver: r.solver,
    ...(r.solver === "dopri5" ? {} : { steps: r.steps }),
    ...(K > 0 ? { cfg_scale: r.cfg } : {}),
    nfe: r.nfe,
    sampling_s: Number(r.seconds.toFixed(2)),
    ...rounded(r.scores),
  });
  const json = {
    checkpoint: o.checkpoint,
    weights: which.toLowerCase(),
    num_samples: N,
    shift: o.shift,
    seed: o.seed,
    reference: { n: ref.n, set: "fashion-mnist test" },
    classifier: { name: o.classifier, test_accuracy: acc },
    ...(grid.length === 1 ? { ...setting(results[0]) } : { sweep: results.map(setting) }),
    ...(floor ? { floor: rounded(floor) } : {}),
    total_s: Number(total.toFixed(2)),
  };
  const line = JSON.stringify(json);
  console.log(`JSON: ${line}`);
  if (o.json) await writeFileAtomic(o.json, new TextEncoder().encode(line + "\n"));
}

if (import.meta.main) await runMain(main);
