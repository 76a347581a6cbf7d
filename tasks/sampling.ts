/**
 * The one place the tasks turn weights into something `generateImages` samples from: a checkpoint
 * read and checked without a GPU (so a bad file costs no adapter start-up), then uploaded.
 */
import { join } from "node:path";
import {
  decodeCheckpoint,
  type DiTConfig,
  generateImages,
  type GenerateOptions,
  isShippedName,
  type Kernels,
  Model,
  resolveWeights,
  type TrainingCheckpoint,
} from "../mod.ts";
import { UsageError } from "./cli.ts";
import { reason } from "./files.ts";

/** Sampling from one set of weights on the GPU. */
export interface Sampler {
  cfg: DiTConfig;
  generate(opts: GenerateOptions): Promise<{ images: Float32Array; nfe: number }>;
  /** Free the uploaded weights (not those of a buffer passed in). */
  dispose(): void;
}

/** A sampler over a model already on the GPU (a trainer's EMA model). */
export function samplerFor(model: Model): Sampler {
  return { cfg: model.cfg, generate: (o) => generateImages(model, o), dispose: () => {} };
}

/** A sampler over weights in memory: uploaded into a new model. */
export function uploadWeights(
  k: Kernels,
  cfg: DiTConfig,
  weights: Float32Array,
  kind: "raw" | "ema" = "raw",
): Sampler {
  const model = new Model(k, cfg, { weights, kind });
  return { ...samplerFor(model), dispose: () => model.params.buffer.destroy() };
}

/** A checkpoint's config and the weights to sample with, checked; no GPU needed. */
export interface CheckpointWeights {
  cfg: DiTConfig;
  weights: Float32Array;
  /** Which weights: the EMA ones (default when present) or the raw ones. */
  kind: "EMA" | "raw";
  /** A training checkpoint's trainer state (step, options). */
  state?: TrainingCheckpoint["state"];
}

/**
 * A checkpoint file from `--checkpoint`: a shipped name (fashion-mnist-small: weights/ next to
 * this module, by URL), a path, an http(s)/file URL, or a run directory (its final checkpoint).
 * `flag` names the option in errors.
 */
export async function resolveCheckpoint(path: string, flag = "--checkpoint"): Promise<string> {
  const url = resolveWeights(path);
  if (isShippedName(path) && url.startsWith("file:")) {
    if (!(await Deno.stat(new URL(url)).catch(() => undefined))) {
      throw new UsageError(
        `${flag} ${path}: weights/${path}.safetensors is not in this copy of flowgpu ` +
          `(weights/README.md says how it is made)`,
      );
    }
  }
  if (/^(https?|file):/.test(url)) return url;
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st) throw new UsageError(`${flag} ${path}: no such file or directory`);
  if (!st.isDirectory) return path;
  for (
    const p of [join(path, "checkpoints", "final.safetensors"), join(path, "final.safetensors")]
  ) {
    if (await Deno.stat(p).catch(() => undefined)) return p;
  }
  throw new UsageError(
    `${flag} ${path}: no checkpoints/final.safetensors in that run directory ` +
      `(an unfinished run: pass one of its checkpoints/step_*.safetensors)`,
  );
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
  let c;
  try {
    c = decodeCheckpoint(bytes);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const useEma = ema && c.ema !== undefined;
  // A single set of weights may be EMA ones (an exported or saved EMA model).
  const kind = useEma || (c.ema === undefined && c.kind === "ema") ? "EMA" : "raw";
  return { cfg: c.cfg, weights: useEma ? c.ema! : c.params, kind, state: c.state };
}
