/**
 * The one place the tasks turn weights into something `generateImages` samples from: the
 * `--checkpoint` argument resolved (shipped names, run directories), the checkpoint read and
 * checked without a GPU (so a bad file costs no adapter start-up), then uploaded; and the option
 * rows generate and eval share.
 */
import { join } from "node:path";
import {
  decodeCheckpoint,
  type DecodeOptions,
  defaultPrecision,
  type DiTConfig,
  type Generated,
  generateImages,
  type GenerateOptions,
  type Gpu,
  isShippedName,
  isVqvaeCheckpoint,
  type Kernels,
  type LatentSpace,
  type Method,
  Model,
  type OptionSpec,
  type OptionTable,
  type Precision,
  precisionProblem,
  resolveWeights,
  type TrainingCheckpoint,
  VqvaeLatentDecoder,
} from "../mod.ts";
import { type OptionValues, UsageError } from "./cli.ts";
import { reason } from "./files.ts";

/** The weights options of every sampling task (generate, eval): which checkpoint, which weights. */
export const CHECKPOINT_OPTION = {
  type: "string",
  help: "checkpoint .safetensors (path or URL), a run directory (its final checkpoint), " +
    "or a shipped name (fashion-mnist-small)",
} satisfies OptionSpec;
export const NO_EMA_OPTION = {
  type: "boolean",
  help: "use the raw weights instead of the EMA weights",
} satisfies OptionSpec;

/** The solver options every sampling task takes (generate, eval), in one table. */
export const SAMPLING_OPTIONS = {
  num_steps: { type: "int", help: "solver steps (fixed-step solvers)", default: 50, min: 1 },
  cfg_scale: {
    type: "number",
    help: "classifier-free guidance scale (1 = no guidance)",
    default: 3.0,
    min: 0,
  },
  guidance_interval: {
    type: "string",
    help: "guide only for t in [a,b], given as a,b with 0 <= a <= b <= 1 (e.g. 0,0.7)",
    check: (s: string) => {
      const p = s.split(",").map((x) => x.trim() === "" ? NaN : Number(x));
      const ok = p.length === 2 && p.every((x) => x >= 0 && x <= 1) && p[0] <= p[1];
      return ok ? undefined : `expects a,b with 0 <= a <= b <= 1, got '${s}'`;
    },
  },
  solver: {
    type: "string",
    help: "ODE solver",
    choices: ["euler", "heun", "midpoint", "rk4", "dopri5"],
    default: "euler",
  },
  shift: {
    type: "number",
    help: "SD3 time shift on sigma = 1 - t (>1: more steps near the noise)",
    default: 1,
    above: 0,
  },
  atol: { type: "number", help: "dopri5 absolute tolerance", default: 1e-5, above: 0 },
  rtol: { type: "number", help: "dopri5 relative tolerance", default: 1e-5, above: 0 },
  seed: {
    type: "int",
    help: "random seed (same seed, same images, whatever --batch)",
    default: 0,
    min: 0,
    max: 2 ** 32 - 1,
  },
  precision: {
    type: "string",
    help: "f32, or f16 (mixed precision: f16 weight copy and activations; needs shader-f16) " +
      "(default: f16 on a GPU with shader-f16, else f32)",
    choices: ["f32", "f16"],
  },
} satisfies OptionTable;

/** The precision a sampling task runs in: --precision, else the adapter's default; checked. */
export function samplingPrecision(
  gpu: Gpu,
  o: OptionValues<typeof SAMPLING_OPTIONS>,
): Precision {
  const precision = (o.precision ?? defaultPrecision(gpu)) as Precision;
  const why = precisionProblem(gpu, precision);
  if (why) throw new UsageError(`--${why}`);
  return precision;
}

/** The sampler's settings from parsed SAMPLING_OPTIONS (labels, batch, progress: the caller's). */
export function samplerSettings(
  o: OptionValues<typeof SAMPLING_OPTIONS>,
): Omit<GenerateOptions, "labels"> {
  return {
    steps: o.num_steps,
    cfgScale: o.cfg_scale,
    guidanceInterval: o.guidance_interval?.split(",").map(Number) as [number, number] | undefined,
    method: o.solver as Method,
    shift: o.shift,
    atol: o.atol,
    rtol: o.rtol,
    seed: o.seed,
  };
}

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
 * A sampler over a checkpoint's weights: uploaded into a new model (f32, or f16 mixed precision
 * for the DiT), with a latent model's decoder (`decode` says whether it snaps to the codebook).
 */
export function uploadWeights(
  k: Kernels,
  ck: CheckpointWeights,
  opts: { precision?: Precision; decode?: DecodeOptions } = {},
): Sampler {
  const { cfg, weights, latent } = ck;
  const kind = ck.kind === "EMA" ? "ema" : "raw";
  const decoder = latent ? new VqvaeLatentDecoder(k, latent, opts.decode) : undefined;
  const model = new Model(k, cfg, { weights, kind, precision: opts.precision ?? "f32", decoder });
  return {
    ...samplerFor(model),
    dispose: () => {
      model.params.buffer.destroy();
      model.params16?.buffer.destroy();
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
  /** A training checkpoint's trainer state (step, options). */
  state?: TrainingCheckpoint["state"];
  /** A latent model's space (its VQ-VAE and scale). */
  latent?: LatentSpace;
  classNames?: string[];
}

/**
 * A checkpoint file from `--checkpoint`: a shipped name (fashion-mnist-small: weights/ next to
 * this module, by URL), a path, an http(s)/file URL, or a run directory (its final checkpoint).
 * `flag` names the option in errors (and says it is required when `path` is undefined).
 */
export async function resolveCheckpoint(
  path: string | undefined,
  flag = "--checkpoint",
): Promise<string> {
  if (path === undefined) {
    throw new UsageError(
      `${flag} is required (a .safetensors file, a run directory, or fashion-mnist-small)`,
    );
  }
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
  // A single set of weights may be EMA ones (an exported or saved EMA model).
  const kind = useEma || (c.ema === undefined && c.kind === "ema") ? "EMA" : "raw";
  return {
    cfg: c.cfg,
    weights: useEma ? c.ema! : c.params,
    kind,
    state: c.state,
    latent: c.latent,
    classNames: c.classNames,
  };
}
