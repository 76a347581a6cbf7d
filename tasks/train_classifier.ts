/**
 * `deno task train-classifier`: trains the evaluation feature network (MLP 784→512→256→10,
 * GELU) on the full Fashion-MNIST training set with this engine's kernels, reports the test-set
 * accuracy after each epoch, and writes the weights as safetensors (default: the shipped
 * weights/fashion-mnist-classifier.safetensors). Run with --help for the flags.
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import {
  argmax,
  Classifier,
  classifierInfo,
  encodeClassifier,
  FASHION_MNIST_WIDTHS,
} from "../src/eval/classifier.ts";
import { CLASSIFIER_DEFAULTS, ClassifierTrainer } from "../src/eval/classifier_train.ts";
import { loadFashionMnistTest, loadFashionMnistTrain, toFloat } from "../src/io/eval_data.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";

/** Every flag of this task (snake_case; kebab-case accepted too). */
const SPECS: Record<string, FlagSpec> = {
  data: {
    kind: "string",
    help: "folder with the Fashion-MNIST IDX files (train-* and t10k-*); default Debian's",
  },
  epochs: { kind: "int", help: "passes over the 60,000 training images" },
  batch_size: { kind: "int", help: "images per step" },
  lr: { kind: "number", help: "peak AdamW learning rate (cosine decay to 0)" },
  weight_decay: { kind: "number", help: "AdamW decoupled weight decay" },
  warmup: { kind: "int", help: "linear warmup steps" },
  seed: { kind: "int", help: "random seed (init and data order)" },
  out: { kind: "string", help: "output .safetensors" },
};
const DEFAULTS = {
  epochs: CLASSIFIER_DEFAULTS.epochs,
  batch_size: CLASSIFIER_DEFAULTS.batch,
  lr: CLASSIFIER_DEFAULTS.lr,
  weight_decay: CLASSIFIER_DEFAULTS.weightDecay,
  warmup: CLASSIFIER_DEFAULTS.warmup,
  seed: CLASSIFIER_DEFAULTS.seed,
  out: "weights/fashion-mnist-classifier.safetensors",
};
const USAGE = "Usage: deno task train-classifier [options]\n\n" +
  "Trains the Fashion-MNIST feature classifier used by `deno task eval` (FD, class accuracy,\n" +
  "precision/recall) with this project's kernels, and reports its test-set accuracy.";

async function main() {
  const { values: v, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(helpText(USAGE, SPECS, DEFAULTS));
    return;
  }
  const o = { ...DEFAULTS, ...v } as typeof DEFAULTS & { data?: string };
  for (const key of ["epochs", "batch_size", "lr"] as const) {
    if (!(Number(o[key]) > 0)) throw new UsageError(`--${key} must be positive, got ${o[key]}`);
  }
  const [trainDs, testDs] = await Promise.all([
    loadFashionMnistTrain(o.data),
    loadFashionMnistTest(o.data),
  ]);
  if (trainDs.length < 60000) {
    console.log(`warning: only ${trainDs.length} training images (the full set is not found)`);
  }
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
  const isTty = Deno.stdout.isTerminal();
  const enc = new TextEncoder();
  const t0 = performance.now();
  let lastPrint = 0;
  const accuracy = async (weights: Float32Array) => {
    const clf = new Classifier(k, { info: classifierInfo(widths), flat: weights });
    const { logits } = await clf.classify(test.images);
    const pred = argmax(logits, widths[widths.length - 1]);
    let ok = 0;
    for (let i = 0; i < pred.length; i++) if (pred[i] === test.labels[i]) ok++;
    clf.params.buffer.destroy();
    return ok / pred.length;
  };
  let acc = 0;
  for (let e = 1; e <= opts.epochs; e++) {
    const te = performance.now();
    const loss = await trainer.epoch(train, total, (step) => {
      const now = performance.now();
      if (!isTty || now - lastPrint < 1000) return;
      lastPrint = now;
      const rate = step / ((now - t0) / 1000);
      Deno.stdout.writeSync(
        enc.encode(`\repoch ${e}: step ${step}/${total}  ${rate.toFixed(1)} steps/s\x1b[K`),
      );
    });
    acc = await accuracy(await trainer.weights());
    if (isTty) Deno.stdout.writeSync(enc.encode("\r\x1b[K"));
    const s = (performance.now() - te) / 1000, all = (performance.now() - t0) / 1000;
    console.log(
      `epoch ${e}/${opts.epochs}  loss ${loss.toFixed(4)}  test accuracy ${
        (100 * acc).toFixed(2)
      }%  ${s.toFixed(1)} s (total ${all.toFixed(0)} s)`,
    );
  }
  const command = "deno task train-classifier " +
    Deno.args.map((a) => /^[\w.,/=:-]+$/.test(a) ? a : JSON.stringify(a)).join(" ");
  const info = classifierInfo(widths, {
    dataset: "Fashion-MNIST (60,000 training images)",
    test_accuracy: acc,
    command: command.trim(),
  });
  await writeFileAtomic(o.out, encodeClassifier({ info, flat: await trainer.weights() }));
  console.log(`wrote ${o.out}: test accuracy ${(100 * acc).toFixed(2)}% (10,000 test images)`);
}

if (import.meta.main) await runMain(main);
