/**
 * Weights shipped in the repository's weights/ folder, found by name relative to this module's
 * URL (so `--checkpoint fashion-mnist-small` works from a checkout, from an https: import and in a
 * browser page), and the compact form they are shipped in: the EMA weights under DiT's names in
 * F16 (pos_embed in F32: its loader checks it against the sin-cos table to 1e-5).
 * Web-standard only: reading goes through `fetch`/`readSource`.
 */
import type { DiTConfig } from "../model/config.ts";
import type { WeightKind } from "../model/model.ts";
import { configToMetadata, modelStateFromFlat } from "./checkpoint.ts";
import { WEIGHTS_KEY } from "./model_io.ts";
import { encodeSafetensors } from "./safetensors.ts";

/** Names of the weights in weights/ (file `weights/<name>.safetensors`). */
export const SHIPPED_WEIGHTS = ["fashion-mnist-small", "fashion-mnist-classifier"] as const;
export type ShippedName = typeof SHIPPED_WEIGHTS[number];

/** Metadata key of the shipped weights' provenance (JSON: source, steps, command, …). */
export const PROVENANCE_KEY = "flowgpu.provenance";

/** True if `name` is one of the shipped weights' names. */
export function isShippedName(name: string): name is ShippedName {
  return (SHIPPED_WEIGHTS as readonly string[]).includes(name);
}

/** The URL of shipped weights `name`, relative to `base` (default: this module). */
export function shippedWeightsUrl(name: ShippedName, base: string | URL = import.meta.url): URL {
  return new URL(`../../weights/${name}.safetensors`, base);
}

/**
 * A shipped name → its URL's href (file:, http: or https:, as this module was loaded); anything
 * else (a path, a run directory, a URL) is returned as given.
 */
export function resolveWeights(nameOrPath: string, base: string | URL = import.meta.url): string {
  return isShippedName(nameOrPath) ? shippedWeightsUrl(nameOrPath, base).href : nameOrPath;
}

/**
 * The shipped form of a model: its weights (flat, paramLayout order) under DiT's names, F16 except
 * pos_embed, with the config metadata the loader reads, which weights they are (`kind`, as
 * `saveCheckpoint` marks them) and `info` under PROVENANCE_KEY.
 */
export function encodeShippedWeights(
  cfg: DiTConfig,
  flat: Float32Array,
  info: Record<string, unknown> = {},
  kind: WeightKind = "ema",
): Uint8Array {
  const tensors = modelStateFromFlat(cfg, flat).map((t) => ({
    ...t,
    dtype: t.name === "pos_embed" ? "F32" as const : "F16" as const,
  }));
  return encodeSafetensors(tensors, {
    ...configToMetadata(cfg),
    ...(kind === "ema" ? { [WEIGHTS_KEY]: "ema" } : {}),
    [PROVENANCE_KEY]: JSON.stringify(info),
  });
}
