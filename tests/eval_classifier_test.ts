/**
 * The evaluation classifier: its recorded forward, loss and backward against a float64 MLP
 * (itself checked by central finite differences), batched classification with a ragged last
 * batch, and the safetensors round trip.
 */
import { FlatBuffer } from "../src/gpu/arena.ts";
import {
  Classifier,
  ClassifierGraph,
  classifierInfo,
  classifierLayout,
  decodeClassifier,
  encodeClassifier,
} from "../src/eval/classifier.ts";
import { encodeSafetensors } from "../src/io/safetensors.ts";
import { assertClose, kernels } from "./harness.ts";
import { type Layer, mlpForward, mlpLossGrad } from "./reference/mlp.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { assert } from "./task_run.ts";

const WIDTHS = [13, 9, 7, 5];

function randomWeights(rng: Rng, widths: number[]) {
  const layout = classifierLayout(widths);
  const flat = new Float32Array(layout.total);
  const layers: Layer[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    const w = rng.normals(widths[l + 1] * widths[l], 1 / Math.sqrt(widths[l]));
    const b = rng.normals(widths[l + 1], 0.3);
    flat.set(w, layout.get(`fc${l + 1}.weight`).offset);
    flat.set(b, layout.get(`fc${l + 1}.bias`).offset);
    layers.push({ w, b });
  }
  return { flat, layers, layout };
}

Deno.test("classifier loss and gradients match a float64 MLP", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xc1f);
  const B = 6;
  const { flat, layers, layout } = randomWeights(rng, WIDTHS);
  const x = rng.normals(B * WIDTHS[0], 1.5);
  const labels = Float64Array.from(rng.ints(B, WIDTHS[3]));
  const ref = mlpLossGrad(x, labels, WIDTHS, layers);
  // The reference gradient against central finite differences of its own loss.
  for (const [l, name] of [[0, "w"], [1, "b"], [2, "w"]] as const) {
    const arr = layers[l][name], g = ref.grads[l][name];
    for (let t = 0; t < 6; t++) {
      const i = Math.floor(rng.uniform() * arr.length), h = 1e-6, orig = arr[i];
      arr[i] = orig + h;
      const lp = mlpLossGrad(x, labels, WIDTHS, layers).loss;
      arr[i] = orig - h;
      const lm = mlpLossGrad(x, labels, WIDTHS, layers).loss;
      arr[i] = orig;
      const num = (lp - lm) / (2 * h);
      assert(Math.abs(num - g[i]) < 1e-7, `reference fc${l + 1}.${name}[${i}]: ${g[i]} vs ${num}`);
    }
  }
  const params = new FlatBuffer(k.device, layout, "params");
  const grads = new FlatBuffer(k.device, layout, "grads");
  k.write(params.all(), flat);
  k.write(grads.all(), new Float32Array(layout.total).fill(NaN));
  const g = new ClassifierGraph(k, WIDTHS, params, B);
  k.write(g.x, Float32Array.from(x));
  k.write(g.labels, Uint32Array.from(labels));
  await k.run([...g.forward(), ...g.lossAndBackward(grads)]);
  assertClose("logits", await k.read(g.logits), ref.logits);
  assertClose("features", await k.read(g.features), ref.features);
  assertClose("loss", await k.read(g.loss), [ref.loss]);
  const got = await k.read(grads.all());
  for (let l = 0; l < 3; l++) {
    for (const name of ["weight", "bias"] as const) {
      const s = layout.get(`fc${l + 1}.${name}`);
      assertClose(
        `d fc${l + 1}.${name}`,
        got.subarray(s.offset, s.offset + s.length),
        ref.grads[l][name === "weight" ? "w" : "b"],
      );
    }
  }
});

Deno.test("Classifier.classify: batches with a ragged, zero-padded last batch", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xc2f);
  const { flat, layers } = randomWeights(rng, WIDTHS);
  const N = 7;
  const x = rng.normals(N * WIDTHS[0]);
  const clf = new Classifier(k, { info: classifierInfo(WIDTHS), flat }, 3);
  const got = await clf.classify(Float32Array.from(x));
  const ref = mlpForward(x, N, WIDTHS, layers);
  assertClose("features", got.features, ref.act[ref.act.length - 1]);
  assertClose("logits", got.logits, ref.logits);
});

Deno.test("classifier safetensors round trip and refusals", () => {
  const rng = new Rng(TEST_SEED ^ 0xc3f);
  const { flat } = randomWeights(rng, WIDTHS);
  const info = classifierInfo(WIDTHS, { test_accuracy: 0.5 });
  const back = decodeClassifier(encodeClassifier({ info, flat }));
  assert(back.info.test_accuracy === 0.5 && back.info.widths.join() === WIDTHS.join(), "info");
  assert(back.flat.every((v, i) => v === flat[i]), "weights differ after the round trip");
  const noMeta = encodeSafetensors([{ name: "a", shape: [1], data: Float32Array.of(1) }]);
  let msg = "";
  try {
    decodeClassifier(noMeta, "x.safetensors");
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(/not a classifier file/.test(msg), `expected a refusal, got "${msg}"`);
});
