/**
 * `deno task eval`: sample N class-balanced images from a checkpoint and score them against the
 * Fashion-MNIST test set with the feature classifier: Fréchet distance in its penultimate
 * features (FD), its accuracy on the requested classes, k-NN precision and recall (k = 3), and the
 * same scores for N real training images (the floor). `--sweep` runs a grid of solvers × steps ×
 * CFG scales into one table and a plot of FD against NFE. Run with --help for the flags.
 */
import {
  balancedLabels,
  Classifier,
  decodeClassifier,
  describeGpu,
  getGpu,
  isShippedName,
  Kernels,
  linePlotPng,
  type Method,
  type OptionTable,
  readSource,
  reference,
  resolveWeights,
  scoreImages,
  type Scores,
} from "../mod.ts";
import { balancedSubset, gather } from "../src/eval/evaluate.ts";
import { loadFashionMnistTest, loadFashionMnistTrain, toFloat } from "../src/io/eval_data.ts";
import {
  type OptionValues,
  outputFile,
  readJsonObject,
  runMain,
  taskOptions,
  UsageError,
} from "./cli.ts";
import { checkWritableFile, exitOnSignals, reason, writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";
import {
  readCheckpoint,
  resolveCheckpoint,
  samplerSettings,
  SAMPLING_OPTIONS,
  samplingPrecision,
  uploadWeights,
} from "./sampling.ts";

const SOLVERS: readonly string[] = SAMPLING_OPTIONS.solver.choices;
const DEFAULT_PLOT = "eval_sweep.png";

/** Why a sweep list item is wrong, or undefined: solvers, step counts, CFG scales. */
const ITEM = {
  solver: (s: string) => SOLVERS.includes(s) ? undefined : `unknown solver '${s}'`,
  steps: (s: string) =>
    /^\d+$/.test(s) && Number(s) >= 1 ? undefined : `step count '${s}' is not an integer ≥ 1`,
  cfg: (s: string) =>
    s !== "" && Number(s) >= 0 ? undefined : `CFG scale '${s}' is not a number ≥ 0`,
};

/** A comma-list option's check: every item passes `item`. */
function listOf(item: (s: string) => string | undefined, what: string) {
  return (v: string) => {
    for (const p of v.split(",")) {
      const why = item(p.trim());
      if (why) return `expects a comma list of ${what}: ${why}`;
    }
    return undefined;
  };
}

const OPTIONS = {
  checkpoint: {
    type: "string",
    help: "checkpoint .safetensors (path or URL), a run directory, or a shipped name " +
      "(fashion-mnist-small)",
  },
  num_samples: {
    type: "int",
    help: "images to generate (class-balanced), and real images for the floor",
    default: 10000,
    min: 4, // k-NN radii need 3 other points
    max: 100_000,
  },
  ...SAMPLING_OPTIONS,
  batch: { type: "int", help: "images per batched forward while sampling", default: 250, min: 1 },
  data: {
    type: "string",
    help: "folder with t10k-images/labels-idx*-ubyte(.gz) (and train-* for the floor); " +
      "default: Debian's dataset-fashion-mnist",
  },
  classifier: {
    type: "string",
    help: "feature classifier: a shipped name or a .safetensors path",
    default: "fashion-mnist-classifier",
  },
  no_ema: { type: "boolean", help: "use the raw weights instead of the EMA weights" },
  no_floor: { type: "boolean", help: "skip the floor (real training images)" },
  sweep: { type: "boolean", help: "score every --sweep-solvers × --sweep-steps × --sweep-cfg" },
  sweep_solvers: {
    type: "string",
    help: "comma list of solvers for --sweep",
    default: "euler,heun",
    check: listOf(ITEM.solver, "solvers"),
  },
  sweep_steps: {
    type: "string",
    help: "comma list of step counts for --sweep (dopri5 picks its own)",
    default: "10,25,50",
    check: listOf(ITEM.steps, "step counts"),
  },
  sweep_cfg: {
    type: "string",
    help: "comma list of CFG scales for --sweep (default: --cfg-scale)",
    check: listOf(ITEM.cfg, "CFG scales"),
  },
  sweep_file: {
    type: "string",
    help: 'JSON grid {"solvers": [...], "steps": [...], "cfg": [...]} (implies --sweep)',
  },
  plot: {
    type: "string",
    help: `PNG of FD against NFE per solver, with --sweep (default: the first free name of ` +
      `${DEFAULT_PLOT}, eval_sweep-2.png, …)`,
  },
  json: { type: "string", help: "also write the JSON result to this file" },
} satisfies OptionTable;

type Values = OptionValues<typeof OPTIONS>;

const USAGE = "Usage: deno task eval --checkpoint PATH|NAME [options]\n\n" +
  "Scores generated images against the Fashion-MNIST test set with the feature classifier\n" +
  "(weights/fashion-mnist-classifier.safetensors): FD, class accuracy, precision, recall (k = 3),\n" +
  "and the same for real training images (the floor). Prints a table and a JSON line.\n\n" +
  "Examples:\n" +
  "  deno task eval --checkpoint runs/latest\n" +
  "  deno task eval --checkpoint runs/latest --num-samples 2000 --solver heun --num-steps 25\n" +
  "  deno task eval --checkpoint runs/latest --sweep --sweep-solvers euler,heun " +
  "--sweep-steps 10,25,50 --sweep-cfg 1,3";

/** One sampling configuration. */
interface Setting {
  solver: string;
  steps: number;
  cfg: number;
}

const split = (s: string) => s.split(",").map((p) => p.trim());

/** A --sweep-file's grid, each list checked like the flags'. */
async function sweepFile(path: string): Promise<Partial<Record<keyof typeof ITEM, string[]>>> {
  const g = await readJsonObject("--sweep-file", path, '"solvers", "steps" and "cfg" lists');
  const out: Partial<Record<keyof typeof ITEM, string[]>> = {};
  for (const [key, v] of Object.entries(g)) {
    const name = ({ solvers: "solver", steps: "steps", cfg: "cfg", cfg_scales: "cfg" } as const)[
      key as "solvers"
    ];
    if (!name) {
      throw new UsageError(`--sweep-file ${path}: unknown key "${key}" (solvers, steps, cfg)`);
    }
    if (!Array.isArray(v) || v.length === 0) {
      throw new UsageError(`--sweep-file ${path}: "${key}" must be a non-empty array`);
    }
    const items = v.map(String);
    for (const s of items) {
      const why = ITEM[name](s);
      if (why) throw new UsageError(`--sweep-file ${path}: "${key}" has ${why}`);
    }
    out[name] = items;
  }
  return out;
}

/** The settings to score: one, or the sweep grid (from flags or a JSON file). */
async function settings(o: Values): Promise<Setting[]> {
  if (!o.sweep && !o.sweep_file) {
    return [{ solver: o.solver, steps: o.num_steps, cfg: o.cfg_scale }];
  }
  const file = o.sweep_file ? await sweepFile(o.sweep_file) : {};
  const solvers = file.solver ?? split(o.sweep_solvers);
  const steps = (file.steps ?? split(o.sweep_steps)).map(Number);
  const cfgs = (file.cfg ?? (o.sweep_cfg ? split(o.sweep_cfg) : [String(o.cfg_scale)])).map(Number);
  const out: Setting[] = [];
  for (const solver of solvers) {
    // An adaptive solver picks its own steps: one run per CFG scale.
    for (const st of solver === "dopri5" ? [0] : steps) {
      for (const cfg of cfgs) out.push({ solver, steps: st, cfg });
    }
  }
  return out;
}

/** The classifier of `--classifier` (a path, URL or shipped name), read and checked. */
async function readClassifier(arg: string) {
  const what = `--classifier ${arg}`;
  const src = resolveWeights(arg);
  let bytes: Uint8Array;
  try {
    bytes = /^(https?|file):/.test(src) ? await readSource(src) : await Deno.readFile(src);
  } catch (e) {
    const hint = isShippedName(arg) ? ` (shipped weights ${arg} are not in weights/)` : "";
    throw new UsageError(`${what}: ${reason(e)}${hint}`);
  }
  try {
    return decodeClassifier(bytes, what);
  } catch (e) {
    const msg = (e as Error).message;
    throw new UsageError(msg.startsWith(what) ? msg : `${what}: ${msg}`);
  }
}

/** The output paths, checked writable before any work; the default plot never overwrites. */
async function outputs(o: Values, sweep: boolean): Promise<{ plot?: string; json?: string }> {
  if (o.plot !== undefined && !sweep) throw new UsageError("--plot: the plot is of a --sweep");
  const json = o.json;
  if (json !== undefined) {
    await checkWritableFile(json, `--json ${json}`).catch((e) => {
      throw new UsageError(e.message);
    });
  }
  return { plot: sweep ? await outputFile("--plot", o.plot, DEFAULT_PLOT) : undefined, json };
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

function rounded(s: Scores) {
  const r = (v: number) => Number(v.toPrecision(6));
  return {
    n: s.n,
    fd: r(s.fd),
    ...(s.accuracy !== undefined ? { accuracy: r(s.accuracy) } : {}),
    precision: r(s.precision),
    recall: r(s.recall),
  };
}

async function main(): Promise<number> {
  const o = taskOptions(USAGE, OPTIONS);
  if (!o) return 0;
  // Everything a user can get wrong is checked before the GPU starts.
  const grid = await settings(o);
  const ckptPath = await resolveCheckpoint(o.checkpoint);
  const ck = await readCheckpoint(ckptPath, !o.no_ema).catch((e) => {
    throw new UsageError(e.message);
  });
  const clfWeights = await readClassifier(o.classifier);
  const { cfg } = ck, K = cfg.num_classes;
  // A latent model's images are its VQ-VAE's (decoded from the sampled latents).
  const img = ck.latent?.vqvae.cfg ?? cfg;
  const D = img.in_channels * img.image_size ** 2, widths = clfWeights.info.widths;
  if (D !== widths[0]) {
    throw new UsageError(
      `the model makes ${img.in_channels}×${img.image_size}×${img.image_size} images; the ` +
        `classifier takes ${widths[0]} values (1×28×28 Fashion-MNIST)`,
    );
  }
  if (K > widths[widths.length - 1]) {
    throw new UsageError(`the model has ${K} classes, the classifier ${widths.at(-1)}`);
  }
  const sweep = !!o.sweep || !!o.sweep_file;
  const out = await outputs(o, sweep);
  const testDs = await loadFashionMnistTest(o.data).catch((e) => {
    throw new UsageError(e.message);
  });
  const trainDs = o.no_floor ? undefined : await loadFashionMnistTrain(o.data).catch((e) => {
    throw new UsageError(e.message);
  });
  exitOnSignals();

  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const N = o.num_samples;
  console.log(`adapter: ${describeGpu(gpu)}`);
  console.log(
    `checkpoint ${ckptPath} (${ck.kind} weights): ${K > 0 ? `${K} classes` : "unconditional"}, ` +
      `D=${cfg.hidden_size} depth ${cfg.depth} patch ${cfg.patch_size}` +
      (ck.latent ? `, latent (${cfg.in_channels}×${cfg.image_size}², decoded by its VQ-VAE)` : ""),
  );
  const acc = clfWeights.info.test_accuracy;
  console.log(
    `classifier ${o.classifier}: MLP ${widths.join("→")}` +
      (acc !== undefined ? `, test accuracy ${pct(acc)}` : ""),
  );
  const t0 = performance.now();
  const clf = new Classifier(k, clfWeights);
  const test = toFloat(testDs);
  const ref = await reference(clf, test.images);
  console.log(`reference: ${ref.n} test images (${testDs.length === 10000 ? "t10k" : "--data"})`);

  let floor: Scores | undefined;
  if (trainDs) {
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

  const sampler = uploadWeights(k, ck, { precision: samplingPrecision(gpu, o) });
  const labels = balancedLabels(N, K);
  const batches = Math.ceil(N / Math.min(o.batch, N));
  const results: (Setting & { nfe: number; seconds: number; scores: Scores })[] = [];
  const progress = new Progress();
  for (const [i, s] of grid.entries()) {
    const name = `${s.solver}${s.solver === "dopri5" ? "" : ` ${s.steps} steps`}` +
      (K > 0 ? ` CFG ${s.cfg}` : "");
    const label = sweep ? `[${i + 1}/${grid.length}] ${name}` : `sampling (${name})`;
    const ts = performance.now();
    const { images, nfe } = await sampler.generate({
      labels,
      ...samplerSettings(o),
      // the setting's solver, steps and scale over the flags'
      method: s.solver as Method,
      steps: s.steps || o.num_steps,
      cfgScale: s.cfg,
      batch: o.batch,
      onProgress: (done, total) => {
        const sec = (performance.now() - ts) / 1000, rate = done / Math.max(sec, 1e-9);
        const eta = (total - done) / Math.max(rate, 1e-9);
        progress.update(
          `${label}: ${done}/${total} images  ${rate.toFixed(1)} img/s  ` +
            (done < total ? `ETA ${fmtTime(eta)}` : fmtTime(sec)),
          done === total,
        );
      },
    });
    const seconds = (performance.now() - ts) / 1000;
    const scores = await scoreImages(k, clf, ref, images, K > 0 ? labels : undefined);
    // NFE per image: the solver's evaluations of one batch (each a guided pair with CFG).
    results.push({ ...s, nfe: nfe / batches, seconds, scores });
    if (sweep) {
      progress.log(
        `  FD ${num(scores.fd)}  accuracy ${pct(scores.accuracy)}  precision ` +
          `${num(scores.precision)}  recall ${num(scores.recall)}`,
      );
    }
  }
  sampler.dispose();
  const total = (performance.now() - t0) / 1000;

  console.log();
  if (!sweep) {
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
    const cells = (s: Scores) => [
      num(s.fd),
      pct(s.accuracy),
      num(s.precision),
      num(s.recall),
    ];
    for (const r of results) {
      rows.push([
        r.solver,
        r.solver === "dopri5" ? "-" : String(r.steps),
        K > 0 ? String(r.cfg) : "-",
        num(r.nfe, 1),
        ...cells(r.scores),
        fmtTime(r.seconds),
      ]);
    }
    if (floor) rows.push(["floor (real)", "-", "-", "-", ...cells(floor), "-"]);
    console.log(table(rows));
    const series = new Map<string, [number, number][]>();
    const manyCfg = K > 0 && new Set(results.map((x) => x.cfg)).size > 1;
    for (const r of results) {
      const key = r.solver + (manyCfg ? ` CFG ${r.cfg}` : "");
      if (!series.has(key)) series.set(key, []);
      series.get(key)!.push([r.nfe, r.scores.fd]);
    }
    for (const pts of series.values()) pts.sort((a, b) => a[0] - b[0]);
    const png = await linePlotPng(
      [...series.entries()].map(([name, points]) => ({ name, points })),
      {
        xLabel: "NFE",
        yLabel: `FD, ${N} samples${K > 0 ? "" : ", unconditional"}`,
        logX: true,
      },
    );
    await writeFileAtomic(out.plot!, png);
    console.log(`plot: ${out.plot}   total ${fmtTime(total)}`);
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
    weights: ck.kind.toLowerCase(),
    num_samples: N,
    shift: o.shift,
    seed: o.seed,
    reference: { n: ref.n, set: "fashion-mnist test" },
    classifier: { name: o.classifier, test_accuracy: acc },
    ...(sweep ? { sweep: results.map(setting) } : setting(results[0])),
    ...(floor ? { floor: rounded(floor) } : {}),
    total_s: Number(total.toFixed(2)),
  };
  const line = JSON.stringify(json);
  console.log(`JSON: ${line}`);
  if (out.json) await writeFileAtomic(out.json, new TextEncoder().encode(line + "\n"));
  return 0;
}

if (import.meta.main) await runMain(main);
