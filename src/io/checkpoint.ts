/**
 * Model checkpoints: DiT state dicts (DiT names and shapes) to and from the flat parameter
 * buffer, and config metadata.
 */
import { CONFIG_KEYS, type DiTConfig, type PartialConfig, resolveConfig } from "../model/config.ts";
import { paramLayout, paramSpecs, posEmbed } from "../model/params.ts";

/** A named tensor as safetensors.ts encodes it. */
export interface NamedTensor {
  name: string;
  shape: number[];
  data: Float32Array;
}

/** Tensors by name, e.g. `decodeSafetensors(bytes).tensors`, or a list of named tensors. */
export type TensorSource =
  | Map<string, { shape: number[]; data: Float32Array }>
  | NamedTensor[];

/**
 * Names with these prefixes belong to other state (EMA weights, optimizer, a latent model's
 * VQ-VAE) and are skipped.
 */
export const NON_MODEL_PREFIXES = ["ema.", "opt.", "vqvae."];

/**
 * The model's tensors (every paramSpecs entry, pos_embed included, in layout order) copied out of
 * a flat parameter buffer, named `prefix + DiT name` (e.g. prefix "ema." for EMA weights).
 */
export function modelStateFromFlat(
  cfg: DiTConfig,
  flat: Float32Array,
  prefix = "",
): NamedTensor[] {
  const layout = paramLayout(cfg);
  if (flat.length < layout.total) {
    throw new Error(
      `checkpoint: flat buffer has ${flat.length} elements, layout needs ${layout.total}`,
    );
  }
  return layout.slots.map((s) => ({
    name: prefix + s.name,
    shape: [...s.shape],
    data: flat.slice(s.offset, s.offset + s.length),
  }));
}

/**
 * The flat parameter buffer (paramLayout order, padding zero) from a state dict. The model's
 * tensors are those named `prefix + DiT name`; with prefix "" every name not starting with
 * "ema."/"opt." (or `ignorePrefixes`) is taken as a model tensor, with a non-empty prefix the
 * names without it are ignored. Throws on a missing or unexpected name, a shape mismatch, a
 * non-finite value, or a pos_embed differing from the computed sin-cos table by more than 1e-5.
 */
export function loadModelState(
  cfg: DiTConfig,
  tensors: TensorSource,
  prefix = "",
  ignorePrefixes: string[] = NON_MODEL_PREFIXES,
): Float32Array {
  const byName = new Map<string, { shape: number[]; data: Float32Array }>();
  const entries: [string, { shape: number[]; data: Float32Array }][] = tensors instanceof Map
    ? [...tensors.entries()]
    : tensors.map((t) => [t.name, t]);
  for (const [name, t] of entries) {
    let local: string;
    if (prefix !== "") {
      if (!name.startsWith(prefix)) continue;
      local = name.slice(prefix.length);
    } else {
      if (ignorePrefixes.some((p) => name.startsWith(p))) continue;
      local = name;
    }
    if (byName.has(local)) throw new Error(`checkpoint: duplicate tensor ${name}`);
    byName.set(local, t);
  }
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  const missing: string[] = [];
  for (const spec of paramSpecs(cfg)) {
    const t = byName.get(spec.name);
    if (!t) {
      missing.push(prefix + spec.name);
      continue;
    }
    if (t.shape.length !== spec.shape.length || t.shape.some((d, i) => d !== spec.shape[i])) {
      throw new Error(
        `checkpoint: ${prefix}${spec.name} has shape [${t.shape}], the config needs [${spec.shape}]`,
      );
    }
    const slot = layout.get(spec.name);
    if (t.data.length !== slot.length) {
      throw new Error(
        `checkpoint: ${prefix}${spec.name} has ${t.data.length} values for shape [${t.shape}]`,
      );
    }
    for (let i = 0; i < t.data.length; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new Error(`checkpoint: ${prefix}${spec.name}[${i}] is ${t.data[i]}`);
      }
    }
    flat.set(t.data, slot.offset);
  }
  if (missing.length) {
    throw new Error(
      `checkpoint: missing ${missing.length} tensor(s): ${missing.slice(0, 5).join(", ")}` +
        (missing.length > 5 ? ", ..." : ""),
    );
  }
  const known = new Set(paramSpecs(cfg).map((s) => s.name));
  const extra = [...byName.keys()].filter((n) => !known.has(n));
  if (extra.length) {
    throw new Error(
      `checkpoint: unexpected tensor(s) for this config: ` +
        extra.slice(0, 5).map((n) => prefix + n).join(", ") + (extra.length > 5 ? ", ..." : ""),
    );
  }
  const want = posEmbed(cfg);
  const slot = layout.get("pos_embed");
  for (let i = 0; i < want.length; i++) {
    const got = flat[slot.offset + i];
    if (!(Math.abs(got - want[i]) <= 1e-5)) {
      throw new Error(
        `checkpoint: ${prefix}pos_embed[${i}] = ${got} differs from the sin-cos value ${
          want[i]
        } (different image_size/patch_size/hidden_size?)`,
      );
    }
  }
  return flat;
}

/** Config fields every checkpoint stores (mlp_ratio only when it differs from DiT's 4). */
const META_KEYS = CONFIG_KEYS.filter((k) => k !== "mlp_ratio");

/** Checkpoint metadata: {"config": JSON of the model config}. */
export function configToMetadata(cfg: DiTConfig): Record<string, string> {
  const c: Record<string, number> = {};
  for (const k of META_KEYS) c[k] = cfg[k];
  if (cfg.mlp_ratio !== 4) c.mlp_ratio = cfg.mlp_ratio;
  return { config: JSON.stringify(c) };
}

/** The model config stored by configToMetadata (validated by resolveConfig). */
export function configFromMetadata(meta: Record<string, string>): DiTConfig {
  const s = meta?.config;
  if (typeof s !== "string") throw new Error('checkpoint: metadata has no "config" entry');
  let c: unknown;
  try {
    c = JSON.parse(s);
  } catch {
    throw new Error(`checkpoint: metadata "config" is not valid JSON: ${s.slice(0, 80)}`);
  }
  if (c === null || typeof c !== "object" || Array.isArray(c)) {
    throw new Error('checkpoint: metadata "config" is not a JSON object');
  }
  for (const k of META_KEYS) {
    if (!Object.hasOwn(c, k)) throw new Error(`checkpoint: metadata config lacks ${k}`);
  }
  return resolveConfig(c as PartialConfig);
}
