/**
 * VQ-VAE checkpoints as safetensors: the module's state_dict under its PyTorch names (encoder,
 * quantizer buffers, decoder; loads into scripts/pytorch_vqvae.py's VQVAE with strict=True), and
 * for training the AdamW moments (`opt.exp_avg.*`, `opt.exp_avg_sq.*`) and the trainer state in
 * the metadata. Every problem decoding one is a one-line Error.
 */
import { decodeSafetensors, encodeSafetensors, type TensorIn } from "../io/safetensors.ts";
import { resolveVqvaeConfig, type VQVAEConfig } from "./config.ts";
import {
  paramLayout,
  type ParamSpec,
  stateDictSpecs,
  stateLayout,
  trainableSpecs,
} from "./params.ts";
import type { Layout } from "../gpu/arena.ts";
import type { VqvaeTrainerState } from "./trainer.ts";

/** Metadata key of the config (DiT checkpoints use "config": neither loads as the other). */
export const VQVAE_CONFIG_KEY = "vqvae_config";
export const VQVAE_TRAIN_KEY = "flowgpu.vqvae.train";

/** A VQ-VAE's weights and quantizer state: what encoding and decoding need. */
export interface VqvaeWeights {
  cfg: VQVAEConfig;
  /** Trainable weights (paramLayout). */
  params: Float32Array;
  /** Quantizer state (stateLayout). */
  state: Float32Array;
}

export interface VqvaeCheckpoint extends VqvaeWeights {
  m?: Float32Array;
  v?: Float32Array;
  train?: VqvaeTrainerState & { options?: Record<string, unknown> };
}

const isQuantizer = (name: string) => name.startsWith("quantizer.");

/**
 * Whether `bytes` look like a VQ-VAE checkpoint (its header's metadata has the VQ-VAE config),
 * from the header alone: no checks, never throws (a quick test of which task wrote a file).
 */
export function isVqvaeCheckpoint(bytes: Uint8Array): boolean {
  try {
    if (bytes.length < 8) return false;
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const n = dv.getUint32(0, true);
    if (dv.getUint32(4, true) !== 0 || 8 + n > bytes.length) return false;
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    return typeof header?.__metadata__?.[VQVAE_CONFIG_KEY] === "string";
  } catch {
    return false;
  }
}

function slice(flat: Float32Array, layout: Layout, s: ParamSpec, prefix = ""): TensorIn {
  const slot = layout.get(s.name);
  return {
    name: prefix + s.name,
    shape: s.shape,
    data: flat.slice(slot.offset, slot.offset + slot.length),
  };
}

/** The module's state_dict (encoder, quantizer, decoder) under `prefix` + PyTorch names. */
export function vqvaeStateDict(w: VqvaeWeights, prefix = ""): TensorIn[] {
  const pl = paramLayout(w.cfg), sl = stateLayout(w.cfg);
  return stateDictSpecs(w.cfg).map((s) =>
    isQuantizer(s.name) ? slice(w.state, sl, s, prefix) : slice(w.params, pl, s, prefix)
  );
}

export function encodeVqvaeCheckpoint(c: VqvaeCheckpoint): Uint8Array {
  const pl = paramLayout(c.cfg);
  const tensors = vqvaeStateDict(c);
  for (const [prefix, flat] of [["opt.exp_avg.", c.m], ["opt.exp_avg_sq.", c.v]] as const) {
    if (flat) tensors.push(...trainableSpecs(c.cfg).map((s) => slice(flat, pl, s, prefix)));
  }
  const meta: Record<string, string> = { [VQVAE_CONFIG_KEY]: JSON.stringify(c.cfg) };
  if (c.train) meta[VQVAE_TRAIN_KEY] = JSON.stringify(c.train);
  return encodeSafetensors(tensors, meta);
}

type Tensors = Map<string, { shape: number[]; data: Float32Array }>;

/** A flat buffer of `layout` from the `prefix`-named tensors of `specs`, each checked. */
function readFlat(tensors: Tensors, layout: Layout, specs: ParamSpec[], prefix: string) {
  const flat = new Float32Array(layout.total);
  for (const s of specs) {
    const t = tensors.get(prefix + s.name);
    if (!t) throw new Error(`missing tensor ${prefix}${s.name}`);
    if (t.shape.join() !== s.shape.join()) {
      throw new Error(`${prefix}${s.name} has shape [${t.shape}], the config needs [${s.shape}]`);
    }
    const bad = t.data.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new Error(`${prefix}${s.name}[${bad}] is ${t.data[bad]}`);
    flat.set(t.data, layout.get(s.name).offset);
  }
  return flat;
}

/**
 * The weights of `cfg` from the `prefix`-named state_dict tensors (names without the prefix are
 * ignored); throws an Error naming a missing, misshapen, non-finite or unexpected tensor.
 */
export function vqvaeFromStateDict(cfg: VQVAEConfig, tensors: Tensors, prefix = ""): VqvaeWeights {
  const specs = stateDictSpecs(cfg), known = new Set(specs.map((s) => prefix + s.name));
  const extra = [...tensors.keys()].filter((n) => n.startsWith(prefix) && !known.has(n));
  if (extra.length) {
    throw new Error(`unexpected tensor(s) for this VQ-VAE config: ${extra.slice(0, 3).join(", ")}`);
  }
  return {
    cfg,
    params: readFlat(tensors, paramLayout(cfg), specs.filter((s) => !isQuantizer(s.name)), prefix),
    state: readFlat(tensors, stateLayout(cfg), specs.filter((s) => isQuantizer(s.name)), prefix),
  };
}

/** A VQ-VAE config from its metadata JSON (validated); throws an Error saying what is wrong. */
export function vqvaeConfigFromJson(raw: string): VQVAEConfig {
  try {
    return resolveVqvaeConfig(JSON.parse(raw));
  } catch (e) {
    throw new Error(`bad ${VQVAE_CONFIG_KEY} metadata: ${(e as Error).message}`);
  }
}

/** A valid safetensors file that is not a VQ-VAE checkpoint (e.g. a flow model's). */
export class NotVqvaeCheckpoint extends Error {}

/**
 * Decode and check a checkpoint; `name` (e.g. the path), when given, starts every error message.
 * A file without the VQ-VAE metadata throws NotVqvaeCheckpoint.
 */
export function decodeVqvaeCheckpoint(bytes: Uint8Array, name?: string): VqvaeCheckpoint {
  const fail = (why: string, E: new (m: string) => Error = Error): never => {
    throw new E(name === undefined ? why : `${name}: ${why}`);
  };
  let decoded;
  try {
    decoded = decodeSafetensors(bytes);
  } catch (e) {
    return fail(`${(e as Error).message} (corrupt or not a safetensors file)`);
  }
  const { tensors, metadata } = decoded;
  const raw = metadata?.[VQVAE_CONFIG_KEY];
  if (raw === undefined) {
    fail(
      `not a VQ-VAE checkpoint (no ${VQVAE_CONFIG_KEY} metadata${
        metadata?.config ? "; it looks like a DiT checkpoint" : ""
      })`,
      NotVqvaeCheckpoint,
    );
  }
  let c: VqvaeCheckpoint;
  try {
    const cfg = vqvaeConfigFromJson(raw!);
    const opt = ["opt.exp_avg.", "opt.exp_avg_sq."];
    const model = new Map([...tensors].filter(([n]) => !opt.some((p) => n.startsWith(p))));
    c = vqvaeFromStateDict(cfg, model);
    const pl = paramLayout(cfg), specs = trainableSpecs(cfg);
    const known = new Set(opt.flatMap((p) => specs.map((s) => p + s.name)));
    const extra = [...tensors.keys()].filter((n) => !model.has(n) && !known.has(n));
    if (extra.length) throw new Error(`unexpected tensor(s): ${extra.slice(0, 3).join(", ")}`);
    if (tensors.has(opt[0] + specs[0].name)) {
      c.m = readFlat(tensors, pl, specs, opt[0]);
      c.v = readFlat(tensors, pl, specs, opt[1]);
    }
  } catch (e) {
    return fail((e as Error).message);
  }
  const st = metadata?.[VQVAE_TRAIN_KEY];
  if (st) {
    try {
      c.train = JSON.parse(st);
    } catch {
      fail(`metadata ${VQVAE_TRAIN_KEY} is not valid JSON`);
    }
  }
  return c;
}
