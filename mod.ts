/**
 * flowgpu: class-conditional image generation by flow matching with a DiT backbone, trained and
 * sampled in WGSL compute kernels through WebGPU.
 *
 * ```ts
 * import { createModel, generateImages, loadModel, saveCheckpoint } from "./mod.ts";
 *
 * const model = await createModel({ preset: "tiny", image_size: 28, in_channels: 1, num_classes: 10 }, { seed: 0 });
 * const B = 2, x = new Float32Array(B * 28 * 28).fill(0.1);
 * const v = await model.velocity(x, new Float32Array([0.5, 0.9]), new Int32Array([3, 10])); // 10 = null label
 * await saveCheckpoint(model, "tiny.safetensors");
 * const again = await loadModel("tiny.safetensors");
 * const { images } = await generateImages(again, { labels: [0, 1], steps: 10, cfgScale: 2 });
 * ```
 *
 * @module
 */

// GPU runtime
export { describeGpu, getGpu, type Gpu } from "./src/gpu/device.ts";
export { type Dispatch, Kernels, type Tensor } from "./src/gpu/kernels.ts";
export { FlatBuffer, Layout } from "./src/gpu/arena.ts";

// Model
export {
  CONFIG_KEYS,
  type DiTConfig,
  numTokens,
  type PartialConfig,
  type PresetName,
  PRESETS,
  resolveConfig,
} from "./src/model/config.ts";
export { initParams, paramLayout, paramSpecs, posEmbed } from "./src/model/params.ts";
export { DiTGraph } from "./src/model/dit.ts";
export {
  GraphContext,
  type GraphOptions,
  linear,
  linearBackward,
  type Views,
  views,
} from "./src/model/component.ts";
export { ADALN, DiTBlock } from "./src/model/block.ts";
export { LabelEmbedder, PatchEmbed, TimestepEmbedder } from "./src/model/embedders.ts";
export { FINAL_ADALN, FinalLayer } from "./src/model/final_layer.ts";
export {
  createModel,
  defaultKernels,
  defaultPrecision,
  type LatentDecoder,
  Model,
  type ModelOptions,
  type Precision,
  precisionProblem,
  type WeightKind,
} from "./src/model/model.ts";
export {
  type Generated,
  generateImages,
  type GenerateOptions,
  imageNoise,
  type StepInfo,
} from "./src/model/sampler.ts";

// Checkpoints and images
export { decodeSafetensors, encodeSafetensors, SafetensorsError } from "./src/io/safetensors.ts";
export {
  CLASSES_KEY,
  decodeCheckpoint,
  encodeCheckpoint,
  LATENT_KEY,
  loadModel,
  type LoadOptions,
  loadVqvae,
  readSource,
  saveCheckpoint,
  type TrainingCheckpoint,
} from "./src/io/model_io.ts";
export { writeFileAtomic } from "./src/io/atomic_write.ts";
export { type GridPixels, gridPixels, imageGridPng, lossCurvePng } from "./src/io/png.ts";
export { crc32, encodePng } from "./src/io/png.ts";

// Flow matching (network-agnostic)
export {
  type Method,
  sample,
  type SampleOptions,
  shiftSigma,
  solveAdaptive,
  solveFixed,
  type SolveStats,
  type StepFn,
  timeGrid,
  type VelocityFn,
} from "./src/flow/sample.ts";
export { cfgCombine, cfgVelocity, guidanceActive } from "./src/flow/guidance.ts";
export { CpuVecOps, type VecOps } from "./src/flow/vecops.ts";
export {
  FlowPath,
  interpolate,
  pathCoefficients,
  sampleTimes,
  TARGET_COEFFICIENTS,
  type TimeSampling,
} from "./src/flow/path.ts";
export { GpuVecOps } from "./src/ops/vecops.ts";

// Data and training
export {
  ArrayDataset,
  Batcher,
  type Dataset,
  type Sample as DatasetSample,
} from "./src/data/dataset.ts";
export { mix32, type RngState, SeededRng } from "./src/rng.ts";
export { fashionMnistFromBytes, loadFashionMnistSubset } from "./src/data/fashion_mnist.ts";
export { cifar10FromBytes } from "./src/data/cifar10.ts";
export { type DatasetName, datasetTrainDefaults, loadDataset } from "./src/io/datasets.ts";
export {
  type LossScaleState,
  type StepMetrics,
  Trainer,
  type TrainerState,
} from "./src/train/trainer.ts";
export {
  CPU_DEFAULTS,
  GPU_DEFAULTS,
  microBatchSizes,
  TRAIN_OPTIONS,
  type TrainOptions,
  trainOptionsProblem,
  validateTrainOptions,
} from "./src/train/options.ts";
export { emaDecayAt, learningRate } from "./src/train/schedule.ts";
export { muonParamNames, Optimizer } from "./src/train/optimizer.ts";
export {
  allocationFailure,
  describeRun,
  type Fit,
  fitsText,
  fittingFlags,
  formatBytes,
  limitExceeded,
  memoryLimitProblem,
  type RunShape,
  type TrainingMemory,
  trainingMemory,
} from "./src/train/memory.ts";
export { type MemoryLimits, type SizingGpu, sizingGpu } from "./src/gpu/sizing.ts";
export {
  checkOption,
  defaultsOf,
  OptionError,
  type OptionSpec,
  type OptionTable,
  rangeText,
  validateOptions,
} from "./src/train/option_table.ts";

// Evaluation: the feature classifier, FD, precision/recall, shipped weights
export {
  argmax,
  Classifier,
  ClassifierGraph,
  classifierInfo,
  decodeClassifier,
  encodeClassifier,
  FASHION_MNIST_WIDTHS,
} from "./src/eval/classifier.ts";
export { frechetDistance, type Gaussian, gaussianStats, sqrtPsd } from "./src/eval/frechet.ts";
export { precisionRecall } from "./src/eval/prdc.ts";
export {
  balancedLabels,
  quantize,
  type Reference,
  reference,
  scoreImages,
  type Scores,
} from "./src/eval/evaluate.ts";
export {
  encodeShippedWeights,
  isShippedName,
  resolveWeights,
  SHIPPED_WEIGHTS,
  shippedWeightsUrl,
} from "./src/io/weights.ts";
export { linePlotPng, type PlotOptions, type Series } from "./src/io/plot.ts";
// VQ-VAE (the latent space of latent flow matching)
export {
  latentSize,
  resolveVqvaeConfig,
  VQVAE_DEFAULTS,
  VQVAE_KEYS,
  type VQVAEConfig,
} from "./src/vqvae/config.ts";
export {
  initParams as initVqvaeParams,
  initState as initVqvaeState,
  parameterCount as vqvaeParameterCount,
  stateDictSpecs,
} from "./src/vqvae/params.ts";
export { VQVAEGraph } from "./src/vqvae/vqvae.ts";
export { evaluate as evaluateVqvae, psnrPerImage, VQVAE } from "./src/vqvae/model.ts";
export {
  type DecodeOptions,
  encodeDataset,
  type LatentSpace,
  VqvaeLatentDecoder,
} from "./src/vqvae/latent.ts";
export { LatentDataset, latentScale, scaleLatents } from "./src/data/latent.ts";
export {
  type VqvaeBuffers,
  type VqvaeStepMetrics,
  VqvaeTrainer,
  type VqvaeTrainerState,
} from "./src/vqvae/trainer.ts";
export {
  VQVAE_CPU_DEFAULTS,
  VQVAE_GPU_DEFAULTS,
  VQVAE_OPTIONS,
  type VqvaeTrainOptions,
} from "./src/vqvae/options.ts";
export {
  decodeVqvaeCheckpoint,
  encodeVqvaeCheckpoint,
  isVqvaeCheckpoint,
  NotVqvaeCheckpoint,
  type VqvaeCheckpoint,
  vqvaeFromStateDict,
  vqvaeStateDict,
  type VqvaeWeights,
} from "./src/vqvae/checkpoint.ts";
export { emojiDatasets, selectEmoji } from "./src/data/emoji.ts";
export { loadEmoji } from "./src/io/emoji.ts";
export { holdOut } from "./src/data/split.ts";
