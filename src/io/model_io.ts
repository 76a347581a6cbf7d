/**
 * Model and training checkpoints as safetensors files: the model under DiT's names (loads into
 * PyTorch DiT with strict=True), training checkpoints add `ema.*`, `opt.exp_avg.*`,
 * `opt.exp_avg_sq.*` (AdamW's moments; with the Muon optimizer, its matrices have
 * `opt.momentum_buffer.*` instead) and the trainer state (step, RNG and data order, options) in
 * the metadata. A latent
 * model also holds its VQ-VAE (`vqvae.*`, the PyTorch VQ-VAE's names) and the latent scale, so
 * that one file generates images; the class names, when known, are in the metadata.
 */
import { decodeSafetensors, encodeSafetensors } from "./safetensors.ts";
import {
  configFromMetadata,
  configToMetadata,
  loadModelState,
  modelStateFromFlat,
} from "./checkpoint.ts";
import { writeFileAtomic } from "./atomic_write.ts";
import type { DiTConfig } from "../model/config.ts";
import { paramLayout, paramSpecs } from "../model/params.ts";
import {
  defaultKernels,
  defaultPrecision,
  Model,
  type Precision,
  type WeightKind,
} from "../model/model.ts";
import type { Kernels } from "../gpu/kernels.ts";
import type { TrainerState } from "../train/trainer.ts";
import { muonParamNames } from "../train/optimizer.ts";
import { VQVAE } from "../vqvae/model.ts";
import {
  decodeVqvaeCheckpoint,
  isVqvaeCheckpoint,
  VQVAE_CONFIG_KEY,
  vqvaeConfigFromJson,
  vqvaeFromStateDict,
  vqvaeStateDict,
} from "../vqvae/checkpoint.ts";
import { type DecodeOptions, type LatentSpace, VqvaeLatentDecoder } from "../vqvae/latent.ts";

export const TRAIN_STATE_KEY = "flowgpu.train";
/** Metadata key saying what the model tensors are: "raw" or "ema" (absent: raw). */
export const WEIGHTS_KEY = "flowgpu.weights";
/** Metadata key of a latent model's space: {"scale": s, "vqvae_config": {...}}. */
export const LATENT_KEY = "flowgpu.latent";
/** Metadata key of the class names (JSON array, class i's name at i). */
export const CLASSES_KEY = "flowgpu.classes";
/** Prefix of a latent model's VQ-VAE tensors. */
export const VQVAE_PREFIX = "vqvae.";

/** Everything a training checkpoint holds. */
export interface TrainingCheckpoint {
  cfg: DiTConfig;
  params: Float32Array;
  /** What `params` are (an EMA model saved for inference holds EMA weights); default raw. */
  kind?: WeightKind;
  ema?: Float32Array;
  /** AdamW's first moments; Muon's momentum buffers at its matrices (options.optimizer "muon"). */
  m?: Float32Array;
  /** AdamW's second moments (zero at Muon's matrices). */
  v?: Float32Array;
  state?: TrainerState & { options?: Record<string, unknown> };
  /** A latent model's space (its VQ-VAE and latent scale). */
  latent?: LatentSpace;
  /** Class names, class i's at i. */
  classNames?: string[];
}

/** Encode a checkpoint (model weights always; EMA, Adam moments and trainer state if given). */
export function encodeCheckpoint(c: TrainingCheckpoint): Uint8Array {
  const muon = new Set(c.state?.options?.optimizer === "muon" ? muonParamNames(c.cfg) : []);
  const tensors = [
    ...modelStateFromFlat(c.cfg, c.params),
    ...(c.ema ? modelStateFromFlat(c.cfg, c.ema, "ema.") : []),
    ...(c.m ? optState(c.cfg, c.m, "opt.exp_avg.", muon, "opt.momentum_buffer.") : []),
    ...(c.v ? optState(c.cfg, c.v, "opt.exp_avg_sq.", muon) : []),
    ...(c.latent ? vqvaeStateDict(c.latent.vqvae, VQVAE_PREFIX) : []),
  ];
  const meta: Record<string, string> = { ...configToMetadata(c.cfg) };
  if (c.state) meta[TRAIN_STATE_KEY] = JSON.stringify(c.state);
  if (c.kind === "ema") meta[WEIGHTS_KEY] = "ema";
  if (c.latent) {
    meta[LATENT_KEY] = JSON.stringify({
      scale: c.latent.scale,
      [VQVAE_CONFIG_KEY]: c.latent.vqvae.cfg,
    });
  }
  if (c.classNames) meta[CLASSES_KEY] = JSON.stringify(c.classNames);
  return encodeSafetensors(tensors, meta);
}

/** Decode a checkpoint, checking every tensor; `configOverride` replaces the metadata config. */
export function decodeCheckpoint(
  bytes: Uint8Array,
  configOverride?: DiTConfig,
): TrainingCheckpoint {
  const { tensors, metadata } = decodeSafetensors(bytes);
  const cfg = configOverride ?? configFromMetadata(metadata ?? {});
  const has = (prefix: string) => [...tensors.keys()].some((n) => n.startsWith(prefix));
  const c: TrainingCheckpoint = { cfg, params: loadModelState(cfg, tensors) };
  if (metadata?.[WEIGHTS_KEY] === "ema") c.kind = "ema";
  if (has("ema.")) c.ema = loadModelState(cfg, tensors, "ema.");
  if (has("opt.exp_avg.")) c.m = loadOptState(cfg, tensors, "opt.exp_avg.");
  if (has("opt.exp_avg_sq.")) c.v = loadOptState(cfg, tensors, "opt.exp_avg_sq.");
  const st = metadata?.[TRAIN_STATE_KEY];
  if (st) {
    try {
      c.state = JSON.parse(st);
    } catch {
      throw new Error(`checkpoint: metadata ${TRAIN_STATE_KEY} is not valid JSON`);
    }
  }
  const latent = metadata?.[LATENT_KEY];
  if (latent !== undefined) c.latent = decodeLatent(latent, tensors, cfg);
  else if (has(VQVAE_PREFIX)) {
    throw new Error(`checkpoint: ${VQVAE_PREFIX}* tensors but no ${LATENT_KEY} metadata`);
  }
  const names = metadata?.[CLASSES_KEY];
  if (names !== undefined) c.classNames = decodeClassNames(names);
  return c;
}

/** A latent model's space from its metadata and `vqvae.*` tensors, checked. */
function decodeLatent(
  raw: string,
  tensors: Map<string, { shape: number[]; data: Float32Array }>,
  model: DiTConfig,
): LatentSpace {
  try {
    const m = JSON.parse(raw);
    const scale = m?.scale;
    if (typeof scale !== "number" || !(scale > 0) || !Number.isFinite(scale)) {
      throw new Error(`scale ${JSON.stringify(scale)} is not a positive number`);
    }
    const cfg = vqvaeConfigFromJson(JSON.stringify(m?.[VQVAE_CONFIG_KEY]));
    const h = cfg.image_size / 4;
    if (cfg.code_dim !== model.in_channels || h !== model.image_size) {
      throw new Error(
        `it makes ${cfg.code_dim}×${h}² latents, the model is ` +
          `${model.in_channels}×${model.image_size}²`,
      );
    }
    return { scale, vqvae: vqvaeFromStateDict(cfg, tensors, VQVAE_PREFIX) };
  } catch (e) {
    throw new Error(`checkpoint: its VQ-VAE (latent space): ${(e as Error).message}`);
  }
}

function decodeClassNames(raw: string): string[] {
  let names: unknown;
  try {
    names = JSON.parse(raw);
  } catch {
    throw new Error(`checkpoint: metadata ${CLASSES_KEY} is not valid JSON`);
  }
  if (!Array.isArray(names) || !names.every((n) => typeof n === "string")) {
    throw new Error(`checkpoint: metadata ${CLASSES_KEY} is not a list of names`);
  }
  return names;
}

/**
 * Optimizer state of the trainable tensors (pos_embed has none), named prefix + DiT name; the
 * tensors in `muon` are named `muonPrefix` + name (Muon's momentum), or left out without one.
 */
function optState(
  cfg: DiTConfig,
  flat: Float32Array,
  prefix: string,
  muon: Set<string>,
  muonPrefix?: string,
) {
  const frozen = new Set(paramSpecs(cfg).filter((s) => !s.trainable).map((s) => s.name));
  return modelStateFromFlat(cfg, flat).flatMap((t) => {
    if (frozen.has(t.name)) return [];
    if (!muon.has(t.name)) return [{ ...t, name: prefix + t.name }];
    return muonPrefix ? [{ ...t, name: muonPrefix + t.name }] : [];
  });
}

/**
 * The flat optimizer-state buffer from `prefix`-named tensors (zeros for frozen slots); a tensor
 * without one takes its `opt.momentum_buffer.` one (Muon's) for the first moments, zeros for the
 * second.
 */
function loadOptState(
  cfg: DiTConfig,
  tensors: Map<string, { shape: number[]; data: Float32Array }>,
  prefix: string,
): Float32Array {
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  for (const spec of paramSpecs(cfg)) {
    if (!spec.trainable) continue;
    const momentum = tensors.get("opt.momentum_buffer." + spec.name);
    const t = tensors.get(prefix + spec.name) ??
      (momentum && prefix === "opt.exp_avg." ? momentum : undefined);
    const slot = layout.get(spec.name);
    if (!t && momentum) continue; // Muon's matrix: no second moment
    if (!t) throw new Error(`checkpoint: missing ${prefix}${spec.name}`);
    if (t.data.length !== slot.length || t.shape.join() !== spec.shape.join()) {
      throw new Error(
        `checkpoint: ${prefix}${spec.name} has shape [${t.shape}], expected [${spec.shape}]`,
      );
    }
    flat.set(t.data, slot.offset);
  }
  return flat;
}

async function fetchBytes(url: string): Promise<Uint8Array> {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`cannot fetch ${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

/**
 * Read a checkpoint's bytes from a path, a URL (http(s)/file) or bytes. In a browser (no Deno) a
 * path is a URL relative to the page.
 */
export async function readSource(source: string | URL | Uint8Array): Promise<Uint8Array> {
  if (source instanceof Uint8Array) return source;
  const s = String(source);
  if (source instanceof URL || /^(https?|file):/.test(s)) return fetchBytes(s);
  const deno = (globalThis as { Deno?: { readFile(p: string): Promise<Uint8Array> } }).Deno;
  if (!deno) {
    const page = (globalThis as { location?: { href: string } }).location?.href;
    if (!page) throw new Error(`checkpoint ${s}: no file system here; give a URL or the bytes`);
    return fetchBytes(new URL(s, page).href);
  }
  try {
    return await deno.readFile(s);
  } catch (e) {
    if ((e as Error).name === "NotFound") throw new Error(`checkpoint not found: ${s}`);
    throw new Error(`cannot read checkpoint ${s}: ${(e as Error).message}`);
  }
}

export interface LoadOptions {
  /** Replaces the config stored in the checkpoint's metadata. */
  config?: DiTConfig;
  /** Take the EMA weights when the checkpoint has them (default true); `model.kind` tells. */
  ema?: boolean;
  /** "f32" or "f16" (mixed precision); default `defaultPrecision` of the adapter. */
  precision?: Precision;
  /** Kernels (pipeline cache) to share; default: the library's shared one. */
  kernels?: Kernels;
  /** A latent model's decode path (snap to the codebook by default). */
  decode?: DecodeOptions;
}

/**
 * Load a model from a checkpoint (path, URL or bytes) for inference; a latent model comes with
 * its decoder (`model.decoder`), so `generateImages` returns pixels.
 */
export async function loadModel(
  source: string | URL | Uint8Array,
  opts: LoadOptions = {},
): Promise<Model> {
  const c = decodeCheckpoint(await readSource(source), opts.config);
  const k = opts.kernels ?? await defaultKernels();
  const ema = (opts.ema ?? true) && c.ema !== undefined;
  return new Model(k, c.cfg, {
    weights: ema ? c.ema : c.params,
    kind: ema ? "ema" : c.kind ?? "raw",
    precision: opts.precision ?? defaultPrecision(k.gpu),
    decoder: c.latent ? new VqvaeLatentDecoder(k, c.latent, opts.decode) : undefined,
  });
}

/**
 * Load a VQ-VAE for encoding (`encode`: images → z_e) and decoding (`decode`: latents → images)
 * from a train-vqvae checkpoint or a latent flow checkpoint (its VQ-VAE), as path, URL or bytes.
 */
export async function loadVqvae(
  source: string | URL | Uint8Array,
  opts: { kernels?: Kernels } = {},
): Promise<VQVAE> {
  const bytes = await readSource(source);
  const w = isVqvaeCheckpoint(bytes)
    ? decodeVqvaeCheckpoint(bytes)
    : decodeCheckpoint(bytes).latent?.vqvae;
  if (!w) throw new Error("checkpoint: neither a VQ-VAE checkpoint nor a latent flow model");
  return new VQVAE(opts.kernels ?? await defaultKernels(), w.cfg, w.params, w.state);
}

/**
 * Save a model's weights (DiT names, config metadata) atomically: an inference checkpoint, which
 * `loadModel` reads (an EMA model's weights are saved as the model's, marked EMA).
 */
export async function saveCheckpoint(model: Model, path: string): Promise<void> {
  const params = await model.readWeights();
  const latent = model.decoder instanceof VqvaeLatentDecoder ? model.decoder.space : undefined;
  const bytes = encodeCheckpoint({ cfg: model.cfg, params, kind: model.kind, latent });
  await writeFileAtomic(path, bytes);
}
