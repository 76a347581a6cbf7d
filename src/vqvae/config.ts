/**
 * VQ-VAE configuration: the network's sizes and the quantizer's hyper-parameters, defaults and
 * validation. Field names are the checkpoint metadata's (snake_case).
 */

export type Activation = "silu" | "relu";

/** A fully resolved, validated VQ-VAE configuration. */
export interface VQVAEConfig {
  /** Input height = width in pixels; a multiple of 4 (two stride-2 downsamplings). */
  image_size: number;
  /** Image channels (1 grey, 3 RGB). */
  in_channels: number;
  /** Width at the latent resolution (half of it at the half resolution); even. */
  channels: number;
  /** Residual blocks in the encoder, and as many in the decoder. */
  res_blocks: number;
  /** GroupNorm groups; must divide `channels`. */
  groups: number;
  /** Nonlinearity: SiLU (default) or ReLU. */
  act: Activation;
  /** Codebook size K. */
  codebook_size: number;
  /** Code dimension D (channels of the latent). */
  code_dim: number;
  /** Commitment loss weight β. */
  beta: number;
  /** EMA decay γ of the codebook statistics. */
  ema_decay: number;
  /** A code unused for this many steps restarts at a random encoder output (0: never). */
  dead_after: number;
}

export const VQVAE_DEFAULTS: Omit<VQVAEConfig, "image_size" | "in_channels"> = {
  channels: 128,
  res_blocks: 2,
  groups: 32,
  act: "silu",
  codebook_size: 512,
  code_dim: 4,
  beta: 0.25,
  ema_decay: 0.99,
  dead_after: 100,
};

export const VQVAE_KEYS: (keyof VQVAEConfig)[] = [
  "image_size",
  "in_channels",
  "channels",
  "res_blocks",
  "groups",
  "act",
  "codebook_size",
  "code_dim",
  "beta",
  "ema_decay",
  "dead_after",
];

/** Fill the defaults and validate; throws an Error with a one-line message on any problem. */
export function resolveVqvaeConfig(partial: Partial<VQVAEConfig>): VQVAEConfig {
  if (partial === null || typeof partial !== "object") {
    throw new Error("config: expected an object");
  }
  for (const k of Object.keys(partial)) {
    if (!(VQVAE_KEYS as string[]).includes(k)) {
      throw new Error(`vqvae config: unknown key "${k}" (known: ${VQVAE_KEYS.join(", ")})`);
    }
  }
  const c = { ...VQVAE_DEFAULTS, ...partial } as VQVAEConfig;
  const int = (k: keyof VQVAEConfig, min: number) => {
    const v = c[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min) {
      throw new Error(`vqvae config: ${k} must be an integer >= ${min}, got ${JSON.stringify(v)}`);
    }
  };
  int("image_size", 4);
  int("in_channels", 1);
  int("channels", 2);
  int("res_blocks", 0);
  int("groups", 1);
  int("codebook_size", 2);
  int("code_dim", 1);
  int("dead_after", 0);
  if (c.image_size % 4 !== 0) {
    throw new Error(
      `vqvae config: image_size ${c.image_size} must be a multiple of 4 (two stride-2 downsamplings)`,
    );
  }
  if (c.channels % 2 !== 0) throw new Error(`vqvae config: channels ${c.channels} must be even`);
  if (c.channels % c.groups !== 0) {
    throw new Error(`vqvae config: groups ${c.groups} must divide channels ${c.channels}`);
  }
  if (c.act !== "silu" && c.act !== "relu") {
    throw new Error(`vqvae config: act must be silu or relu, got ${JSON.stringify(c.act)}`);
  }
  if (!(typeof c.beta === "number" && c.beta >= 0 && Number.isFinite(c.beta))) {
    throw new Error(`vqvae config: beta must be a finite number >= 0, got ${c.beta}`);
  }
  if (!(typeof c.ema_decay === "number" && c.ema_decay >= 0 && c.ema_decay < 1)) {
    throw new Error(`vqvae config: ema_decay must be in [0, 1), got ${c.ema_decay}`);
  }
  const out = {} as Record<string, unknown>;
  for (const k of VQVAE_KEYS) out[k] = c[k];
  return out as unknown as VQVAEConfig;
}

/** Side of the latent grid: image_size / 4 (28 → 7, 32 → 8). */
export function latentSize(cfg: VQVAEConfig): number {
  return cfg.image_size / 4;
}
