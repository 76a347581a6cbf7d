/**
 * VQ-VAE parameters: names and shapes as a PyTorch VQ-VAE's state_dict (see
 * scripts/pytorch_vqvae.py, whose modules carry the same names), in two flat layouts: the
 * trainable weights (AdamW over the whole buffer) and the quantizer's state (the codebook and its
 * EMA statistics, updated by the EMA kernels, not by gradients). PyTorch's default initialisation
 * with a seeded RNG.
 */
import { Layout } from "../gpu/arena.ts";
import { SeededRng } from "../rng.ts";
import type { VQVAEConfig } from "./config.ts";

export interface ParamSpec {
  name: string;
  shape: number[];
}

function conv(s: ParamSpec[], name: string, cout: number, cin: number, k: number): void {
  s.push({ name: `${name}.weight`, shape: [cout, cin, k, k] });
  s.push({ name: `${name}.bias`, shape: [cout] });
}

function norm(s: ParamSpec[], name: string, c: number): void {
  s.push({ name: `${name}.weight`, shape: [c] });
  s.push({ name: `${name}.bias`, shape: [c] });
}

function resBlock(s: ParamSpec[], name: string, c: number): void {
  norm(s, `${name}.norm1`, c);
  conv(s, `${name}.conv1`, c, c, 3);
  norm(s, `${name}.norm2`, c);
  conv(s, `${name}.conv2`, c, c, 3);
}

/** The encoder's trainable tensors, in state_dict order. */
export function encoderSpecs(cfg: VQVAEConfig): ParamSpec[] {
  const C = cfg.channels, h = C / 2, s: ParamSpec[] = [];
  conv(s, "encoder.down.0", h, cfg.in_channels, 4);
  conv(s, "encoder.down.1", C, h, 4);
  conv(s, "encoder.conv_mid", C, C, 3);
  for (let i = 0; i < cfg.res_blocks; i++) resBlock(s, `encoder.res.${i}`, C);
  norm(s, "encoder.norm_out", C);
  conv(s, "encoder.conv_out", cfg.code_dim, C, 1);
  return s;
}

/** The decoder's trainable tensors, in state_dict order. */
export function decoderSpecs(cfg: VQVAEConfig): ParamSpec[] {
  const C = cfg.channels, h = C / 2, s: ParamSpec[] = [];
  conv(s, "decoder.conv_in", C, cfg.code_dim, 3);
  for (let i = 0; i < cfg.res_blocks; i++) resBlock(s, `decoder.res.${i}`, C);
  norm(s, "decoder.norm_out", C);
  conv(s, "decoder.up.0.conv", h, C, 3);
  conv(s, "decoder.up.1.conv", cfg.in_channels, h, 3);
  return s;
}

/** The quantizer's state (PyTorch buffers, plus the embedding the EMA updates). */
export function quantizerSpecs(cfg: VQVAEConfig): ParamSpec[] {
  const K = cfg.codebook_size, D = cfg.code_dim;
  return [
    { name: "quantizer.embedding.weight", shape: [K, D] },
    { name: "quantizer.cluster_size", shape: [K] },
    { name: "quantizer.embed_avg", shape: [K, D] },
    { name: "quantizer.unused", shape: [K] },
  ];
}

/** Every trainable tensor: encoder then decoder. */
export function trainableSpecs(cfg: VQVAEConfig): ParamSpec[] {
  return [...encoderSpecs(cfg), ...decoderSpecs(cfg)];
}

/** The full state_dict order of the PyTorch module: encoder, quantizer, decoder. */
export function stateDictSpecs(cfg: VQVAEConfig): ParamSpec[] {
  return [...encoderSpecs(cfg), ...quantizerSpecs(cfg), ...decoderSpecs(cfg)];
}

function layoutOf(specs: ParamSpec[]): Layout {
  const l = new Layout();
  for (const s of specs) l.add(s.name, s.shape);
  return l;
}

/** Flat layout of the trainable weights (and of their gradients and Adam moments). */
export function paramLayout(cfg: VQVAEConfig): Layout {
  return layoutOf(trainableSpecs(cfg));
}

/** Flat layout of the quantizer state. */
export function stateLayout(cfg: VQVAEConfig): Layout {
  return layoutOf(quantizerSpecs(cfg));
}

/** Number of trainable values. */
export function parameterCount(cfg: VQVAEConfig): number {
  return trainableSpecs(cfg).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
}

/**
 * The trainable weights as PyTorch initialises them: Conv2d weight and bias
 * U(−1/√fan_in, 1/√fan_in) (kaiming_uniform with a = √5), GroupNorm weight 1 and bias 0.
 * Deterministic in `seed`, one stream per tensor.
 */
export function initParams(cfg: VQVAEConfig, seed: number): Float32Array {
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  const isNorm = (n: string) => /\.norm[^.]*\.(weight|bias)$/.test(n);
  for (const slot of layout.slots) {
    const view = flat.subarray(slot.offset, slot.offset + slot.length);
    if (isNorm(slot.name)) {
      if (slot.name.endsWith(".weight")) view.fill(1);
      continue;
    }
    const wShape = slot.name.endsWith(".bias")
      ? layout.get(slot.name.replace(/\.bias$/, ".weight")).shape
      : slot.shape;
    const fanIn = wShape[1] * wShape[2] * wShape[3];
    const bound = 1 / Math.sqrt(fanIn);
    const rng = SeededRng.stream(seed, slot.name);
    for (let i = 0; i < view.length; i++) view[i] = (2 * rng.uniform53() - 1) * bound;
  }
  return flat;
}

/**
 * The initial quantizer state: codebook U(−1/K, 1/K); one pseudo-observation per code
 * (cluster_size 1, embed_avg = the code), so an unused code keeps its value under the EMA; no
 * unused steps.
 */
export function initState(cfg: VQVAEConfig, seed: number): Float32Array {
  const layout = stateLayout(cfg);
  const flat = new Float32Array(layout.total);
  const K = cfg.codebook_size;
  const rng = SeededRng.stream(seed, "quantizer.embedding.weight");
  const e = layout.get("quantizer.embedding.weight");
  for (let i = 0; i < e.length; i++) flat[e.offset + i] = (2 * rng.uniform53() - 1) / K;
  const n = layout.get("quantizer.cluster_size");
  flat.fill(1, n.offset, n.offset + n.length);
  const m = layout.get("quantizer.embed_avg");
  flat.copyWithin(m.offset, e.offset, e.offset + e.length);
  return flat;
}
