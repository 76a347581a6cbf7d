/**
 * DiT model configuration (facebookresearch/DiT, learn_sigma=False), presets and validation.
 * Field names follow DiT's constructor arguments and the checkpoint metadata (snake_case).
 */

/** A fully resolved, validated model configuration. */
export interface DiTConfig {
  /** Input height = width in pixels (or latent cells). */
  image_size: number;
  /** Channels of the input and of the predicted velocity (learn_sigma=False). */
  in_channels: number;
  /** Patch side p; T = (image_size / p)² tokens. */
  patch_size: number;
  /** Width D of the transformer. */
  hidden_size: number;
  /** Number of DiT blocks L. */
  depth: number;
  /** Attention heads; head dim = D / heads. */
  num_heads: number;
  /** Classes K; the label table has K+1 rows (row K = null label). 0 = unconditional. */
  num_classes: number;
  /** The timestep embedder sees t_scale·t (flow time t in [0, 1]); DiT's integer steps: 1000. */
  t_scale: number;
  /** MLP hidden = mlp_ratio·D. Only DiT's 4 is supported. */
  mlp_ratio: number;
}

export type PresetName = "tiny" | "small" | "S" | "B" | "L";

/** Transformer sizes; patch_size 2 unless the preset or the caller sets it. */
export const PRESETS: Readonly<
  Record<
    PresetName,
    Readonly<Pick<DiTConfig, "hidden_size" | "depth" | "num_heads" | "patch_size">>
  >
> = {
  tiny: { hidden_size: 64, depth: 2, num_heads: 2, patch_size: 4 },
  small: { hidden_size: 256, depth: 6, num_heads: 4, patch_size: 2 },
  S: { hidden_size: 384, depth: 12, num_heads: 6, patch_size: 2 },
  B: { hidden_size: 768, depth: 12, num_heads: 12, patch_size: 2 },
  L: { hidden_size: 1024, depth: 24, num_heads: 16, patch_size: 2 },
};

/** What `resolveConfig` accepts: any fields, optionally on top of a named preset. */
export type PartialConfig = Partial<DiTConfig> & { preset?: PresetName };

/** Every DiTConfig field, in checkpoint-metadata order. */
export const CONFIG_KEYS: readonly (keyof DiTConfig)[] = [
  "image_size",
  "in_channels",
  "patch_size",
  "hidden_size",
  "depth",
  "num_heads",
  "num_classes",
  "t_scale",
  "mlp_ratio",
];

/**
 * Fill defaults (preset sizes, patch_size 2, t_scale 1000, mlp_ratio 4) and validate.
 * image_size, in_channels and num_classes are required, as are hidden_size, depth and num_heads
 * when no preset is named. Throws an Error with a one-line message on any problem.
 */
export function resolveConfig(partial: PartialConfig): DiTConfig {
  if (partial === null || typeof partial !== "object") {
    throw new Error("config: expected an object");
  }
  for (const k of Object.keys(partial)) {
    if (k !== "preset" && !(CONFIG_KEYS as readonly string[]).includes(k)) {
      throw new Error(`config: unknown key "${k}" (known: preset, ${CONFIG_KEYS.join(", ")})`);
    }
  }
  let base: Partial<DiTConfig> = {};
  if (partial.preset !== undefined) {
    if (!Object.hasOwn(PRESETS, partial.preset)) {
      throw new Error(
        `config: unknown preset "${partial.preset}" (known: ${Object.keys(PRESETS).join(", ")})`,
      );
    }
    base = { ...PRESETS[partial.preset] };
  }
  const merged: Partial<DiTConfig> = { patch_size: 2, t_scale: 1000, mlp_ratio: 4, ...base };
  for (const k of CONFIG_KEYS) if (partial[k] !== undefined) merged[k] = partial[k];

  for (const k of CONFIG_KEYS) {
    if (merged[k] === undefined) {
      throw new Error(
        `config: missing ${k}` +
          (["hidden_size", "depth", "num_heads"].includes(k) ? " (or name a preset)" : ""),
      );
    }
  }
  const cfg = merged as DiTConfig;
  const posInt = (k: keyof DiTConfig, min = 1) => {
    const v = cfg[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      throw new Error(`config: ${k} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
  };
  posInt("image_size");
  posInt("in_channels");
  posInt("patch_size");
  posInt("hidden_size");
  posInt("depth");
  posInt("num_heads");
  posInt("num_classes", 0);
  if (typeof cfg.t_scale !== "number" || !Number.isFinite(cfg.t_scale) || cfg.t_scale <= 0) {
    throw new Error(`config: t_scale must be a finite number > 0, got ${cfg.t_scale}`);
  }
  if (cfg.mlp_ratio !== 4) {
    throw new Error(`config: mlp_ratio must be 4 (DiT's value), got ${cfg.mlp_ratio}`);
  }
  if (cfg.image_size % cfg.patch_size !== 0) {
    throw new Error(
      `config: patch_size ${cfg.patch_size} must divide image_size ${cfg.image_size}`,
    );
  }
  if (cfg.hidden_size % cfg.num_heads !== 0) {
    throw new Error(
      `config: hidden_size ${cfg.hidden_size} must be divisible by num_heads ${cfg.num_heads}`,
    );
  }
  if (cfg.hidden_size % 4 !== 0) {
    throw new Error(
      `config: hidden_size ${cfg.hidden_size} must be divisible by 4 (2D sin-cos position ` +
        `embedding)`,
    );
  }
  const out: DiTConfig = {
    image_size: cfg.image_size,
    in_channels: cfg.in_channels,
    patch_size: cfg.patch_size,
    hidden_size: cfg.hidden_size,
    depth: cfg.depth,
    num_heads: cfg.num_heads,
    num_classes: cfg.num_classes,
    t_scale: cfg.t_scale,
    mlp_ratio: cfg.mlp_ratio,
  };
  return out;
}

/** Tokens per image: T = (image_size / patch_size)². */
export function numTokens(cfg: DiTConfig): number {
  const g = cfg.image_size / cfg.patch_size;
  return g * g;
}

/** Patch vector length P = C·p·p (both the patch-embed input and the final linear output). */
export function patchDim(cfg: DiTConfig): number {
  return cfg.in_channels * cfg.patch_size * cfg.patch_size;
}

/** MLP hidden width (mlp_ratio·D). */
export function mlpHidden(cfg: DiTConfig): number {
  return Math.trunc(cfg.hidden_size * cfg.mlp_ratio);
}
