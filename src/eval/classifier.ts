/**
 * The evaluation feature network: an MLP (784→512→256→10 for Fashion-MNIST, GELU-tanh between
 * layers) trained on the dataset itself by this engine's kernels. Its penultimate activations
 * (the 256-d GELU output) are the features of FD and precision/recall; its logits give the class
 * accuracy of generated samples. Parameters live in one flat buffer (names fc1.weight, fc1.bias,
 * …, PyTorch nn.Linear layouts), so an AdamW step is one dispatch. Web-standard only.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { FlatBuffer, Layout } from "../gpu/arena.ts";
import { linearBackwardInput, linearBackwardWeight, linearForward } from "../ops/linear.ts";
import { geluBackward, geluForward } from "../ops/elementwise.ts";
import { xentBackward, xentForward } from "../ops/xent.ts";
import { SeededRng } from "../rng.ts";
import { decodeSafetensors, encodeSafetensors } from "../io/safetensors.ts";

/** Layer widths of the Fashion-MNIST classifier: input, hidden…, classes. */
export const FASHION_MNIST_WIDTHS = [784, 512, 256, 10] as const;

/** Metadata key holding the classifier's description (JSON). */
export const CLASSIFIER_KEY = "flowgpu.classifier";

/** What the classifier file's metadata records. */
export interface ClassifierInfo {
  widths: number[];
  activation: "gelu_tanh";
  /** How images enter: pixels/127.5 − 1, [C,H,W] flattened row-major. */
  input: string;
  dataset?: string;
  test_accuracy?: number;
  command?: string;
}

const INPUT = "pixels/127.5-1 in [-1,1], [C,H,W] flattened row-major";

/** Layer l's names: fc{l+1}.weight [out, in] and fc{l+1}.bias [out]. */
export function classifierLayout(widths: readonly number[]): Layout {
  if (widths.length < 2 || widths.some((w) => !(Number.isInteger(w) && w >= 1))) {
    throw new Error(`classifier: bad widths [${widths}]`);
  }
  const layout = new Layout();
  for (let l = 0; l + 1 < widths.length; l++) {
    layout.add(`fc${l + 1}.weight`, [widths[l + 1], widths[l]]);
    layout.add(`fc${l + 1}.bias`, [widths[l + 1]]);
  }
  return layout;
}

/** PyTorch nn.Linear's default init: weight and bias uniform in ±1/sqrt(fan_in). */
export function initClassifier(widths: readonly number[], seed: number): Float32Array {
  const layout = classifierLayout(widths);
  const flat = new Float32Array(layout.total);
  for (const s of layout.slots) {
    const fanIn = widths[Number(s.name.slice(2, s.name.indexOf("."))) - 1];
    const bound = 1 / Math.sqrt(fanIn);
    // One stream per tensor (as the DiT init): its values do not depend on the other layers.
    const rng = SeededRng.stream(seed, `classifier.${s.name}`);
    for (let i = 0; i < s.length; i++) flat[s.offset + i] = (2 * rng.uniform53() - 1) * bound;
  }
  return flat;
}

/**
 * The recorded forward (and training backward) of the MLP for a fixed batch B. Activations:
 * `pre[l]` before and `act[l]` after GELU for each hidden layer; `features` is the last `act`.
 */
export class ClassifierGraph {
  readonly x: Tensor;
  readonly labels: Tensor;
  readonly pre: Tensor[] = [];
  readonly act: Tensor[] = [];
  readonly logits: Tensor;
  readonly loss: Tensor;

  constructor(
    readonly k: Kernels,
    readonly widths: readonly number[],
    readonly params: FlatBuffer,
    readonly B: number,
  ) {
    this.x = k.tensor([B, widths[0]], "clf.x");
    this.labels = k.tensor([B], "clf.labels");
    for (let l = 1; l + 1 < widths.length; l++) {
      this.pre.push(k.tensor([B, widths[l]], `clf.pre${l}`));
      this.act.push(k.tensor([B, widths[l]], `clf.act${l}`));
    }
    this.logits = k.tensor([B, widths[widths.length - 1]], "clf.logits");
    this.loss = k.tensor([1], "clf.loss");
  }

  /** The penultimate activations [B, widths[-2]]. */
  get features(): Tensor {
    return this.act[this.act.length - 1];
  }

  private w(l: number): Tensor {
    return this.params.view(`fc${l + 1}.weight`);
  }
  private b(l: number): Tensor {
    return this.params.view(`fc${l + 1}.bias`);
  }

  /** x → logits (and the activations on the way). */
  forward(): Dispatch[] {
    const k = this.k, out: Dispatch[] = [];
    const L = this.widths.length - 1;
    let input = this.x;
    for (let l = 0; l < L; l++) {
      if (l === L - 1) {
        out.push(...linearForward(k, input, this.w(l), this.b(l), this.logits));
      } else {
        out.push(...linearForward(k, input, this.w(l), this.b(l), this.pre[l]));
        out.push(...geluForward(k, this.pre[l], this.act[l]));
        input = this.act[l];
      }
    }
    return out;
  }

  /**
   * Cross-entropy of the logits against `labels` into `loss`, and the gradient of that mean loss
   * with respect to every parameter into `grads` (a flat buffer of the same layout).
   */
  lossAndBackward(grads: FlatBuffer): Dispatch[] {
    const k = this.k, L = this.widths.length - 1;
    const one = k.tensor([1], "clf.dloss");
    k.write(one, Float32Array.of(1));
    const dLogits = k.tensor(this.logits.shape, "clf.dlogits");
    const dAct = this.act.map((a) => k.tensor(a.shape, "clf.dact"));
    const dPre = this.pre.map((a) => k.tensor(a.shape, "clf.dpre"));
    const out: Dispatch[] = [
      ...xentForward(k, this.logits, this.labels, this.loss),
      ...xentBackward(k, this.logits, this.labels, one, dLogits),
    ];
    let dy = dLogits;
    for (let l = L - 1; l >= 0; l--) {
      const input = l === 0 ? this.x : this.act[l - 1];
      out.push(
        ...linearBackwardWeight(
          k,
          dy,
          input,
          grads.view(`fc${l + 1}.weight`),
          grads.view(`fc${l + 1}.bias`),
        ),
      );
      if (l > 0) {
        out.push(...linearBackwardInput(k, dy, this.w(l), dAct[l - 1]));
        out.push(...geluBackward(k, this.pre[l - 1], dAct[l - 1], dPre[l - 1]));
        dy = dPre[l - 1];
      }
    }
    return out;
  }
}

/** A classifier's weights and description. */
export interface ClassifierWeights {
  info: ClassifierInfo;
  /** Flat parameters in `classifierLayout(info.widths)` order. */
  flat: Float32Array;
}

/** Encode as safetensors: fc*.weight/bias in f32, the description under CLASSIFIER_KEY. */
export function encodeClassifier(w: ClassifierWeights): Uint8Array {
  const layout = classifierLayout(w.info.widths);
  const tensors = layout.slots.map((s) => ({
    name: s.name,
    shape: s.shape,
    data: w.flat.slice(s.offset, s.offset + s.length),
  }));
  return encodeSafetensors(tensors, { [CLASSIFIER_KEY]: JSON.stringify(w.info) });
}

/** Decode a classifier file, checking every tensor's name and shape. */
export function decodeClassifier(bytes: Uint8Array, what = "classifier"): ClassifierWeights {
  const { tensors, metadata } = decodeSafetensors(bytes);
  const raw = metadata[CLASSIFIER_KEY];
  if (!raw) throw new Error(`${what}: no ${CLASSIFIER_KEY} metadata (not a classifier file?)`);
  let info: ClassifierInfo;
  try {
    info = JSON.parse(raw);
  } catch {
    throw new Error(`${what}: metadata ${CLASSIFIER_KEY} is not valid JSON`);
  }
  const layout = classifierLayout(info.widths ?? []);
  const flat = new Float32Array(layout.total);
  for (const s of layout.slots) {
    const t = tensors.get(s.name);
    if (!t) throw new Error(`${what}: missing tensor ${s.name}`);
    if (t.shape.join() !== s.shape.join()) {
      throw new Error(`${what}: ${s.name} has shape [${t.shape}], expected [${s.shape}]`);
    }
    flat.set(t.data, s.offset);
  }
  if (tensors.size !== layout.slots.length) {
    throw new Error(`${what}: ${tensors.size} tensors, expected ${layout.slots.length}`);
  }
  return { info, flat };
}

/** The description of a classifier trained here (input convention filled in). */
export function classifierInfo(
  widths: readonly number[],
  extra: Partial<ClassifierInfo> = {},
): ClassifierInfo {
  return { widths: [...widths], activation: "gelu_tanh", input: INPUT, ...extra };
}

/** Features and logits of many images through one recorded graph of batch B. */
export interface Classified {
  /** [N, widths[-2]] penultimate features. */
  features: Float32Array;
  /** [N, classes] logits. */
  logits: Float32Array;
}

/**
 * A loaded classifier on the GPU: `classify(images)` runs batches of `batch` images (the last one
 * zero-padded) through one recorded forward and reads features and logits back.
 */
export class Classifier {
  readonly params: FlatBuffer;
  private graph: ClassifierGraph;
  private forward: Dispatch[];

  constructor(readonly k: Kernels, readonly weights: ClassifierWeights, readonly batch = 1000) {
    const layout = classifierLayout(weights.info.widths);
    this.params = new FlatBuffer(k.device, layout, "classifier");
    k.write(this.params.all(), weights.flat);
    this.graph = new ClassifierGraph(k, weights.info.widths, this.params, batch);
    this.forward = this.graph.forward();
  }

  get widths(): number[] {
    return this.weights.info.widths;
  }

  /** Run `images` ([N, widths[0]] values in [-1, 1]) through the network. */
  async classify(images: Float32Array): Promise<Classified> {
    const w = this.widths, D = w[0], F = w[w.length - 2], C = w[w.length - 1];
    const N = images.length / D;
    if (!Number.isInteger(N)) {
      throw new Error(`classifier: ${images.length} values are not whole ${D}-value images`);
    }
    const features = new Float32Array(N * F), logits = new Float32Array(N * C);
    const B = this.batch, g = this.graph;
    const pad = new Float32Array(B * D);
    for (let s = 0; s < N; s += B) {
      const n = Math.min(B, N - s);
      if (n === B) this.k.write(g.x, images.subarray(s * D, (s + n) * D));
      else {
        pad.fill(0);
        pad.set(images.subarray(s * D, (s + n) * D));
        this.k.write(g.x, pad);
      }
      this.k.submit(this.forward);
      const [f, l] = await Promise.all([this.k.read(g.features), this.k.read(g.logits)]);
      features.set(f.subarray(0, n * F), s * F);
      logits.set(l.subarray(0, n * C), s * C);
    }
    return { features, logits };
  }
}

/** Index of the largest logit of each row. */
export function argmax(logits: Float32Array, classes: number): Int32Array {
  const N = logits.length / classes, out = new Int32Array(N);
  for (let i = 0; i < N; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++) {
      if (logits[i * classes + c] > logits[i * classes + best]) best = c;
    }
    out[i] = best;
  }
  return out;
}
