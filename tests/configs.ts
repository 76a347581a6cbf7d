/** Model configurations the whole-model tests share (tiny shapes for the CPU adapter). */
import { type DiTConfig, resolveConfig } from "../src/model/config.ts";
import { resolveVqvaeConfig, type VQVAEConfig } from "../src/vqvae/config.ts";

/** The tiny preset on 8×8 grey images, 3 classes (4 tokens of 4×4 patches). */
export const TINY_8: DiTConfig = resolveConfig({
  preset: "tiny",
  image_size: 8,
  in_channels: 1,
  num_classes: 3,
});

/** Nothing a power of two: H = 12, p = 2, C = 3, D = 48, 3 heads, 3 blocks, 5 classes. */
export const ODD: DiTConfig = resolveConfig({
  image_size: 12,
  in_channels: 3,
  patch_size: 2,
  hidden_size: 48,
  num_heads: 3,
  depth: 3,
  num_classes: 5,
});

/** A tiny VQ-VAE of 28×28 grey images (Fashion-MNIST's shape): 2×7² latents, 16 codes. */
export const VQ_GREY_28: VQVAEConfig = resolveVqvaeConfig({
  image_size: 28,
  in_channels: 1,
  channels: 4,
  groups: 2,
  res_blocks: 1,
  codebook_size: 16,
  code_dim: 2,
});
