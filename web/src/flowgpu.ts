/**
 * flowgpu for the browser: the library a page needs (model, sampler, trainer, safetensors
 * checkpoints, PNG grids, the embedded Fashion-MNIST subset) without mod.ts's Deno-only parts
 * (file writes, image-folder datasets through a native decoder). `deno task web` bundles it
 * (WGSL inlined) into web/dist/assets/js/flowgpu.js, two folders below the site's root as src/'s
 * modules are below the repository's, so the paths they resolve through `import.meta.url`
 * (`../../data/…`, `../../weights/…`) land on the copies the build puts beside it.
 *
 * ```html
 * <script type="module">
 *   import { generateImages, loadModel } from "./assets/js/flowgpu.js";
 *   const model = await loadModel(new URL("./my.safetensors", location.href));
 *   const { images } = await generateImages(model, { labels: [0, 1, 2], steps: 20, cfgScale: 3 });
 * </script>
 * ```
 *
 * @module
 */
import type { DiTConfig } from "../../src/model/config.ts";
import type { Model } from "../../src/model/model.ts";
import type { Trainer } from "../../src/train/trainer.ts";
import type { TrainOptions } from "../../src/train/options.ts";
import { encodeCheckpoint } from "../../src/io/model_io.ts";

// GPU runtime
export { describeGpu, getGpu, type Gpu } from "../../src/gpu/device.ts";
export { Kernels, type Tensor } from "../../src/gpu/kernels.ts";

// Model and sampling
export {
  type DiTConfig,
  type PartialConfig,
  type PresetName,
  PRESETS,
  resolveConfig,
} from "../../src/model/config.ts";
export { createModel, defaultKernels, Model, type WeightKind } from "../../src/model/model.ts";
export {
  generateImages,
  type GenerateOptions,
  imageNoise,
  type StepInfo,
} from "../../src/model/sampler.ts";
export { type Method, NFE_PER_STEP, timeGrid } from "../../src/flow/sample.ts";

// Checkpoints and images
export { decodeSafetensors, encodeSafetensors } from "../../src/io/safetensors.ts";
export {
  decodeCheckpoint,
  encodeCheckpoint,
  loadModel,
  readSource,
  type TrainingCheckpoint,
} from "../../src/io/model_io.ts";
export { encodePng, type GridPixels, gridPixels, imageGridPng } from "../../src/io/png.ts";

// Data and training
export { ArrayDataset, Batcher, type Dataset } from "../../src/data/dataset.ts";
export {
  FASHION_MNIST_CLASSES,
  fashionMnistFromBytes,
  loadFashionMnistSubset,
} from "../../src/data/fashion_mnist.ts";
export { mix32, SeededRng } from "../../src/rng.ts";
export { type StepMetrics, Trainer } from "../../src/train/trainer.ts";
export {
  CPU_DEFAULTS,
  GPU_DEFAULTS,
  type TrainOptions,
  validateTrainOptions,
} from "../../src/train/options.ts";

/**
 * The URL of shipped weights `weights/<name>.safetensors`, relative to this module as
 * src/io/weights.ts resolves them (from a checkout: the repository's weights/; bundled: the site's
 * weights/ beside assets/).
 */
export function shippedWeightsUrl(name = "fashion-mnist-small"): URL {
  return new URL(`../../weights/${name}.safetensors`, import.meta.url);
}

/**
 * The names of the weights a build copied (its weights/index.json, so a page needs no failed
 * request to learn there are none); [] when the file is missing.
 */
export async function shippedWeights(): Promise<string[]> {
  try {
    const r = await fetch(new URL("../../weights/index.json", import.meta.url));
    if (!r.ok) return [];
    const j = await r.json();
    return Array.isArray(j.weights) ? j.weights.map(String) : [];
  } catch {
    return [];
  }
}

/** An inference checkpoint of `model` (its weights, DiT names, config): `loadModel` reads it. */
export async function modelCheckpointBytes(model: Model): Promise<Uint8Array> {
  return encodeCheckpoint({ cfg: model.cfg, params: await model.readWeights(), kind: model.kind });
}

/**
 * A training checkpoint of `trainer` as `deno task train` writes it (weights, EMA, Adam moments,
 * trainer state and options): `deno task generate --checkpoint` samples its EMA weights.
 */
export async function trainingCheckpointBytes(
  trainer: Trainer,
  cfg: DiTConfig = trainer.cfg,
  opts: TrainOptions = trainer.opts,
): Promise<Uint8Array> {
  const bufs = await trainer.buffers();
  for (const [which, arr] of Object.entries(bufs)) {
    if (!arr.every(Number.isFinite)) {
      throw new Error(`${which} has a non-finite value at step ${trainer.step}: no checkpoint`);
    }
  }
  // (awaited: a trainer with a loss scale reads it from the GPU)
  const state = { ...(await trainer.state()), options: { ...opts } };
  return encodeCheckpoint({ cfg, ...bufs, state });
}
