/**
 * The one place the tasks turn weights into something `generateImages` samples from: a checkpoint
 * read and checked without a GPU (so a bad file costs no adapter start-up), then uploaded.
 */
import {
  decodeCheckpoint,
  type DecodeOptions,
  type DiTConfig,
  type Generated,
  generateImages,
  type GenerateOptions,
  isVqvaeCheckpoint,
  type Kernels,
  type LatentSpace,
  Model,
  VqvaeLatentDecoder,
} from "../mod.ts";
import { reason } from "./files.ts";

/** Sampling from one set of weights on the GPU. */
export interface Sampler {
  cfg: DiTConfig;
  /** Images (a latent model's decoded to pixels) with their shape [N, C, H, W]. */
  generate(opts: GenerateOptions): Promise<Generated>;
  /** Free the uploaded weights (not those of a buffer passed in). */
  dispose(): void;
}

/** A sampler over a model already on the GPU (a trainer's EMA model). */
export function samplerFor(model: Model): Sampler {
  return { cfg: model.cfg, generate: (o) => generateImages(model, o), dispose: () => {} };
}

/**
 * A sampler over weights in memory: uploaded into a new model, with a latent model's decoder
 * (`latent`; `decode` says whether it snaps to the codebook).
 */
export function uploadWeights(
  k: Kernels,
  cfg: DiTConfig,
  weights: Float32Array,
  kind: "raw" | "ema" = "raw",
  latent?: LatentSpace,
  decode?: DecodeOptions,
): Sampler {
  const decoder = latent ? new VqvaeLatentDecoder(k, latent, decode) : undefined;
  const model = new Model(k, cfg, { weights, kind, decoder });
  return {
    ...samplerFor(model),
    dispose: () => {
      model.params.buffer.destroy();
      decoder?.dispose();
    },
  };
}

/** A checkpoint's config and the weights to sample with, checked; no GPU needed. */
export interface CheckpointWeights {
  cfg: DiTConfig;
  weights: Float32Array;
  /** Which weights: the EMA ones (default when present) or the raw ones. */
  kind: "EMA" | "raw";
  /** A latent model's space (its VQ-VAE and scale). */
  latent?: LatentSpace;
  classNames?: string[];
}

/** Read a checkpoint (path or http(s)/file URL); errors name `path`. */
export async function readCheckpoint(path: string, ema = true): Promise<CheckpointWeights> {
  let bytes: Uint8Array;
  try {
    if (/^(https?|file):/.test(path)) {
      const r = await fetch(path);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      bytes = new Uint8Array(await r.arrayBuffer());
    } else {
      bytes = await Deno.readFile(path);
    }
  } catch (e) {
    throw new Error(`cannot read ${path}: ${reason(e)}`);
  }
  if (isVqvaeCheckpoint(bytes)) {
    throw new Error(
      `${path}: a VQ-VAE checkpoint (train-vqvae's), not a flow model: train one on its latents ` +
        "with deno task train --vqvae",
    );
  }
  let c;
  try {
    c = decodeCheckpoint(bytes);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const useEma = ema && c.ema !== undefined;
  return {
    cfg: c.cfg,
    weights: useEma ? c.ema! : c.params,
    kind: useEma ? "EMA" : "raw",
    latent: c.latent,
    classNames: c.classNames,
  };
}
