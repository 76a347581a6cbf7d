/**
 * DiT parameters: names and shapes exactly as facebookresearch/DiT's state_dict (learn_sigma=False,
 * in state_dict order), their flat layout, the fixed 2D sin-cos position embedding and DiT's
 * initialize_weights() with a seeded deterministic RNG.
 */
import { Layout } from "../gpu/arena.ts";
import { type DiTConfig, mlpHidden, numTokens, patchDim } from "./config.ts";
import { SeededRng } from "../rng.ts";
import { FREQUENCY_EMBEDDING_SIZE } from "../ops/embed.ts";

export interface ParamSpec {
  name: string;
  shape: number[];
  /** false only for pos_embed (fixed sin-cos, requires_grad=False in DiT). */
  trainable: boolean;
}

/** How DiT's initialize_weights() sets a tensor. */
export type InitKind =
  | { kind: "xavier"; fanIn: number; fanOut: number }
  | { kind: "normal"; std: number }
  | { kind: "zeros" }
  | { kind: "pos_embed" };

/** Every parameter in DiT state_dict order (pos_embed first: it is the DiT module's own). */
export function paramSpecs(cfg: DiTConfig): ParamSpec[] {
  const D = cfg.hidden_size, C = cfg.in_channels, p = cfg.patch_size;
  const T = numTokens(cfg), P = patchDim(cfg), M = mlpHidden(cfg);
  const s: ParamSpec[] = [];
  const add = (name: string, shape: number[], trainable = true) =>
    s.push({ name, shape, trainable });
  add("pos_embed", [1, T, D], false);
  add("x_embedder.proj.weight", [D, C, p, p]);
  add("x_embedder.proj.bias", [D]);
  add("t_embedder.mlp.0.weight", [D, FREQUENCY_EMBEDDING_SIZE]);
  add("t_embedder.mlp.0.bias", [D]);
  add("t_embedder.mlp.2.weight", [D, D]);
  add("t_embedder.mlp.2.bias", [D]);
  if (cfg.num_classes > 0) add("y_embedder.embedding_table.weight", [cfg.num_classes + 1, D]);
  for (let i = 0; i < cfg.depth; i++) {
    const b = `blocks.${i}.`;
    add(b + "attn.qkv.weight", [3 * D, D]);
    add(b + "attn.qkv.bias", [3 * D]);
    add(b + "attn.proj.weight", [D, D]);
    add(b + "attn.proj.bias", [D]);
    add(b + "mlp.fc1.weight", [M, D]);
    add(b + "mlp.fc1.bias", [M]);
    add(b + "mlp.fc2.weight", [D, M]);
    add(b + "mlp.fc2.bias", [D]);
    add(b + "adaLN_modulation.1.weight", [6 * D, D]);
    add(b + "adaLN_modulation.1.bias", [6 * D]);
  }
  add("final_layer.linear.weight", [P, D]);
  add("final_layer.linear.bias", [P]);
  add("final_layer.adaLN_modulation.1.weight", [2 * D, D]);
  add("final_layer.adaLN_modulation.1.bias", [2 * D]);
  return s;
}

/** The flat layout of all parameters (pos_embed included), in paramSpecs order. */
export function paramLayout(cfg: DiTConfig): Layout {
  const l = new Layout();
  for (const s of paramSpecs(cfg)) l.add(s.name, s.shape);
  return l;
}

/** DiT's initialize_weights() rule for one parameter. */
export function initKind(cfg: DiTConfig, name: string, shape: number[]): InitKind {
  if (name === "pos_embed") return { kind: "pos_embed" };
  if (
    name.endsWith("adaLN_modulation.1.weight") || name.endsWith("adaLN_modulation.1.bias") ||
    name.startsWith("final_layer.linear.")
  ) return { kind: "zeros" };
  if (name === "y_embedder.embedding_table.weight") return { kind: "normal", std: 0.02 };
  if (name === "t_embedder.mlp.0.weight" || name === "t_embedder.mlp.2.weight") {
    return { kind: "normal", std: 0.02 };
  }
  if (name.endsWith(".bias")) return { kind: "zeros" };
  if (name === "x_embedder.proj.weight") {
    return { kind: "xavier", fanIn: patchDim(cfg), fanOut: cfg.hidden_size };
  }
  if (name.endsWith(".weight") && shape.length === 2) {
    return { kind: "xavier", fanIn: shape[1], fanOut: shape[0] };
  }
  throw new Error(`initKind: no DiT init rule for ${name}`);
}

/**
 * DiT's fixed 2D sin-cos position embedding [T, D] (get_2d_sincos_pos_embed), computed in float64
 * and rounded to f32 like DiT's `.float()`. Token m = row·g + col; channels [0, D/2) encode the
 * column (DiT's grid[0] comes from meshgrid(grid_w, grid_h)), [D/2, D) the row; each half is
 * [sin(pos·ω), cos(pos·ω)] with ω_i = 1/10000^(i/(D/4)), i < D/4.
 */
export function posEmbed(cfg: DiTConfig): Float32Array {
  const D = cfg.hidden_size, g = cfg.image_size / cfg.patch_size;
  const Q = D / 4;
  const out = new Float32Array(g * g * D);
  const omega = new Float64Array(Q);
  for (let i = 0; i < Q; i++) omega[i] = 1 / Math.pow(10000, i / Q);
  for (let row = 0; row < g; row++) {
    for (let col = 0; col < g; col++) {
      const o = (row * g + col) * D;
      for (let i = 0; i < Q; i++) {
        const a = col * omega[i], b = row * omega[i];
        out[o + i] = Math.sin(a);
        out[o + Q + i] = Math.cos(a);
        out[o + 2 * Q + i] = Math.sin(b);
        out[o + 3 * Q + i] = Math.cos(b);
      }
    }
  }
  return out;
}

/**
 * The flat parameter buffer (paramLayout order, padding zero) initialised as DiT's
 * initialize_weights(): xavier_uniform for nn.Linear weights and the patch projection viewed as
 * [D, C·p·p], zero biases, N(0, 0.02) label table and timestep-MLP weights, zero adaLN_modulation
 * and final_layer.linear, pos_embed sin-cos. Deterministic in `seed` (each tensor has its own
 * stream, so values do not depend on which other tensors exist).
 */
export function initParams(cfg: DiTConfig, seed: number): Float32Array {
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  for (const slot of layout.slots) {
    const view = flat.subarray(slot.offset, slot.offset + slot.length);
    const init = initKind(cfg, slot.name, slot.shape);
    if (init.kind === "pos_embed") view.set(posEmbed(cfg));
    else if (init.kind === "xavier") {
      const rng = SeededRng.stream(seed, slot.name);
      const a = Math.sqrt(6 / (init.fanIn + init.fanOut));
      for (let i = 0; i < view.length; i++) view[i] = (2 * rng.uniform53() - 1) * a;
    } else if (init.kind === "normal") {
      const normals = SeededRng.stream(seed, slot.name).normals53(new Float64Array(view.length));
      for (let i = 0; i < view.length; i++) view[i] = normals[i] * init.std;
    }
  }
  return flat;
}
