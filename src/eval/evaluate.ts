/**
 * Scoring a generator against a reference set with the feature classifier: Fréchet distance in
 * its penultimate features, its accuracy on the samples with respect to the requested class, and
 * k-NN precision/recall; the same scores for real images give the floor. Samples are clamped to
 * [-1, 1] and rounded to the 256 pixel levels first, as a saved PNG would be, so generated and
 * real images are compared on the same grid. Web-standard only.
 */
import type { Kernels } from "../gpu/kernels.ts";
import { shuffle } from "../data/dataset.ts";
import { SeededRng } from "../rng.ts";
import { argmax, type Classifier } from "./classifier.ts";
import { frechetDistance, type Gaussian, gaussianStats } from "./frechet.ts";
import { precisionRecall } from "./prdc.ts";

/** Scores of one image set against the reference. */
export interface Scores {
  /** Number of images scored. */
  n: number;
  /** Fréchet distance in the classifier's penultimate features. */
  fd: number;
  /** Share classified as the requested (or, for real images, true) class; absent if unconditional. */
  accuracy?: number;
  precision: number;
  recall: number;
}

/** The reference set's features and their Gaussian (computed once, reused for every score). */
export interface Reference {
  features: Float32Array;
  stats: Gaussian;
  n: number;
}

/** Clamp to [-1, 1] and round to the 256 levels of an 8-bit pixel (in place; returns `x`). */
export function quantize(x: Float32Array): Float32Array {
  for (let i = 0; i < x.length; i++) {
    const v = Math.max(-1, Math.min(1, x[i]));
    x[i] = Math.round((v + 1) * 127.5) / 127.5 - 1;
  }
  return x;
}

/** n labels with every class equally often (±1): label i is i mod K; all 0 when K is 0. */
export function balancedLabels(n: number, K: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => K > 0 ? i % K : 0);
}

/**
 * Indices of n examples of `labels`, class-balanced (n/K per class, the remainder to the first
 * classes) and otherwise in a seeded random order. Throws when a class has too few examples.
 */
export function balancedSubset(
  labels: ArrayLike<number>,
  K: number,
  n: number,
  seed: number,
): Uint32Array {
  const order = shuffle(
    Uint32Array.from({ length: labels.length }, (_, i) => i),
    new SeededRng(seed),
  );
  const want = Array.from({ length: K }, (_, c) => Math.floor(n / K) + (c < n % K ? 1 : 0));
  const out: number[] = [];
  for (const i of order) {
    const c = labels[i];
    if (want[c] > 0) {
      want[c]--;
      out.push(i);
    }
  }
  if (out.length < n) {
    throw new Error(`only ${out.length} class-balanced examples available, ${n} asked for`);
  }
  return Uint32Array.from(out.sort((a, b) => a - b));
}

/** Images [N, D] of the given indices. */
export function gather(images: Float32Array, D: number, idx: ArrayLike<number>): Float32Array {
  const out = new Float32Array(idx.length * D);
  for (let j = 0; j < idx.length; j++) {
    out.set(images.subarray(idx[j] * D, (idx[j] + 1) * D), j * D);
  }
  return out;
}

/** Features and Gaussian of the reference images. */
export async function reference(clf: Classifier, images: Float32Array): Promise<Reference> {
  const { features } = await clf.classify(images);
  const F = clf.widths[clf.widths.length - 2];
  return { features, stats: gaussianStats(features, F), n: features.length / F };
}

/**
 * Score `images` [N, D] (values in [-1, 1]; quantized here, a copy) against `ref`. `labels`, when
 * given, are the classes each image should show (accuracy is left out without them).
 */
export async function scoreImages(
  k: Kernels,
  clf: Classifier,
  ref: Reference,
  images: Float32Array,
  labels?: ArrayLike<number>,
  opts: { k?: number } = {},
): Promise<Scores> {
  const w = clf.widths, F = w[w.length - 2], C = w[w.length - 1];
  const { features, logits } = await clf.classify(quantize(images.slice()));
  const n = features.length / F;
  const s: Scores = {
    n,
    fd: frechetDistance(ref.stats, gaussianStats(features, F)),
    precision: 0,
    recall: 0,
  };
  if (labels) {
    const pred = argmax(logits, C);
    let ok = 0;
    for (let i = 0; i < n; i++) if (pred[i] === labels[i]) ok++;
    s.accuracy = ok / n;
  }
  const pr = await precisionRecall(k, ref.features, features, F, { k: opts.k ?? 3 });
  s.precision = pr.precision;
  s.recall = pr.recall;
  return s;
}
