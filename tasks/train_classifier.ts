/**
 * `deno task train-classifier`: trains the evaluation feature network (MLP 784→512→256→10,
 * GELU) on the full Fashion-MNIST training set with this engine's kernels, reports the test-set
 * accuracy after each epoch, and writes the weights as safetensors (`--out weights/fashion-mnist-
 * classifier.safetensors` replaces the shipped ones). Run with --help for the flags.
 */
import {
  argmax,
  Classifier,
  classifierInfo,
  describeGpu,
  encodeClassifier,
  FASHION_MNIST_WIDTHS,
  getGpu,
  Kernels,
  type OptionTable,
} from "../mod.ts";
import { CLASSIFIER_DEFAULTS, ClassifierTrainer } from "../src/eval/classifier_train.ts";
import { loadFashionMnistTest, loadFashionMnistTrain, toFloat } from "../src/io/eval_data.ts";
import { outputFile, runMain, taskOptions, UsageError, warn } from "./cli.ts";
import { exitOnSignals, writeFileAtomic } from "./files.ts";
import { Progress } from "./progress.ts";

const DEFAULT_OUT = "fashion-mnist-classifier.safetensors";

const OPTIONS = {
  data: {
    type: "string",
    help: "folder with the Fashion-MNIST IDX files (train-* and t10k-*); " +
      "default: Debian's dataset-fashion-mnist",
  },
  epochs: {
    type: "int",
    help: "passes over the training images",
    default: CLASSIFIER_DEFAULTS.epochs,
    min: 1,
  },
  batch_size: {
    type: "int",
    help: "images per step",
    default: CLASSIFIER_DEFAULTS.batch,
    min: 1,
  },
  lr: {
    type: "number",
    help: "peak AdamW learning rate (cosine decay to 0)",
    default: CLASSIFIER_DEFAULTS.lr,
    above: 0,
  },
  weight_decay: {
    type: "number",
    help: "AdamW decoupled weight decay",
    default: CLASSIFIER_DEFAULTS.weightDecay,
    min: 0,
  },
  warmup: {
    type: "int",
    help: "linear warmup steps",
    default: CLASSIFIER_DEFAULTS.warmup,
    min: 0,
  },
  seed: {
    type: "int",
    help: "random seed (init and data order)",
    default: CLASSIFIER_DEFAULTS.seed,
    min: 0,
    max: 2 ** 32 - 1,
  },
  out: {
    type: "string",
    help: `output .safetensors (default: the first free name of ${DEFAULT_OUT}, …-2, …)`,
  },
} satisfies OptionTable;

const USAGE = "Usage: deno task train-classifier [options]\n\n" +
  "Trains the Fashion-MNIST feature classifier used by `deno task eval` (FD, class accuracy,\n" +
  "precision/recall) with this project's kernels, and reports its test-set accuracy. The shipped\n" +
  "one was made by: deno task train-classifier --out weights/fashion-mnist-classifier.safetensors";

async function main(): Promise<number> {
  const o = taskOptions(USAGE, OPTIONS);
  if (!o) return 0;
  const out = await outputFile("--out", o.out, DEFAULT_OUT);
  const [trainDs, testDs] = await Promise.all([
    loadFashionMnistTrain(o.data),
    loadFashionMnistTest(o.data),
  ]).catch((e) => {
    throw new UsageError(e.message);
  });
  if (trainDs.length < o.batch_size) {
    throw new UsageError(`--batch-size ${o.batch_size}: only ${trainDs.length} training images`);
  }
  if (trainDs.length < 60000) {
    warn(`only ${trainDs.length} training images (the full set is not found)`);
  }
  exitOnSignals();

  const train = toFloat(trainDs), test = toFloat(testDs);
  const gpu = await getGpu();
  const k = new Kernels(gpu);
  const widths = [...FASHION_MNIST_WIDTHS];
  const opts = {
    widths,
    batch: o.batch_size,
    epochs: o.epochs,
    lr: o.lr,
    weightDecay: o.weight_decay,
    warmup: o.warmup,
    seed: o.seed,
  };
  const trainer = new ClassifierTrainer(k, opts);
  const total = trainer.totalSteps(train.labels.length);
  console.log(`adapter: ${describeGpu(gpu)}`);
  console.log(
    `MLP ${widths.join("→")} (GELU), ${trainDs.length} training / ${testDs.length} test ` +
      `images, batch ${opts.batch}, ${opts.epochs} epochs = ${total} steps, lr ${opts.lr}`,
  );
  const t0 = performance.now();
  const accuracy = async (weights: Float32Array) => {
    const clf = new Classifier(k, { info: classifierInfo(widths), flat: weights });
    const { logits } = await clf.classify(test.images);
    const pred = argmax(logits, widths[widths.length - 1]);
    let ok = 0;
    for (let i = 0; i < pred.length; i++) if (pred[i] === test.labels[i]) ok++;
    clf.params.buffer.destroy();
    return ok / pred.length;
  };
  const progress = new Progress();
  let acc = 0;
  for (let e = 1; e <= opts.epochs; e++) {
    const te = performance.now();
    const loss = await trainer.epoch(train, total, (step) => {
      const rate = step / ((performance.now() - t0) / 1000);
      progress.update(`epoch ${e}: step ${step}/${total}  ${rate.toFixed(1)} steps/s`);
    });
    acc = await accuracy(await trainer.weights());
    const s = (performance.now() - te) / 1000, all = (performance.now() - t0) / 1000;
    progress.log(
      `epoch ${e}/${opts.epochs}  loss ${loss.toFixed(4)}  test accuracy ${
        (100 * acc).toFixed(2)
      }%  ${s.toFixed(1)} s (total ${all.toFixed(0)} s)`,
    );
  }
  const command = "deno task train-classifier " +
    Deno.args.map((a) => /^[\w.,/=:-]+$/.test(a) ? a : JSON.stringify(a)).join(" ");
  const info = classifierInfo(widths, {
    dataset: `Fashion-MNIST (${trainDs.length} training images)`,
    test_accuracy: acc,
    command: command.trim(),
  });
  await writeFileAtomic(out, encodeClassifier({ info, flat: await trainer.weights() }));
  console.log(
    `wrote ${out}: test accuracy ${(100 * acc).toFixed(2)}% (${testDs.length} test images)`,
  );
  return 0;
}

if (import.meta.main) await runMain(main);
