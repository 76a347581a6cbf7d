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
  type Method,
  readSource,
  reference,
  resolveWeights,
  scoreImages,
  type Scores,
} from "../mod.ts";
import { balancedSubset, gather } from "../src/eval/evaluate.ts";
import { loadFashionMnistTest, loadFashionMnistTrain, toFloat } from "../src/io/eval_data.ts";
import { runMain, taskOptions, UsageError } from "./cli.ts";
import { exitOnSignals, reason, writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";
import {
  readCheckpoint,
  resolveCheckpoint,
  samplerSettings,
  samplingPrecision,
  uploadWeights,
} from "./sampling.ts";
import { OPTIONS, outputs, settings, USAGE } from "./eval_options.ts";
import {
  fmtTime,
  num,
  pct,
  type Result,
  resultJson,
  scoresTable,
  sweepPlot,
  sweepTable,
} from "./eval_report.ts";

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
  const results: Result[] = [];
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
    console.log(scoresTable(r, N, floor, K));
    console.log(
      `${r.solver}${r.solver === "dopri5" ? "" : ` ${r.steps} steps`}, NFE ${num(r.nfe, 1)}` +
        (K > 0 ? `, CFG ${r.cfg}` : "") + `, shift ${o.shift}, seed ${o.seed}; sampling ` +
        `${fmtTime(r.seconds)} (${(N / r.seconds).toFixed(1)} img/s), total ${fmtTime(total)}`,
    );
  } else {
    console.log(sweepTable(results, floor, K));
    await writeFileAtomic(out.plot!, await sweepPlot(results, N, K));
    console.log(`plot: ${out.plot}   total ${fmtTime(total)}`);
  }
  const json = resultJson({
    o,
    weights: ck.kind.toLowerCase(),
    N,
    K,
    refN: ref.n,
    accuracy: acc,
    sweep,
    floor,
    total,
  }, results);
  const line = JSON.stringify(json);
  console.log(`JSON: ${line}`);
  if (out.json) await writeFileAtomic(out.json, new TextEncoder().encode(line + "\n"));
  return 0;
}

if (import.meta.main) await runMain(main);
