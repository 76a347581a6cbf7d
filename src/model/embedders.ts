/**
 * DiT's embedders: x_embedder (PatchEmbed: a stride-p convolution, here im2col + Linear, plus the
 * fixed pos_embed), t_embedder (TimestepEmbedder: frequency features, Linear, SiLU, Linear) and
 * y_embedder (LabelEmbedder: a table with a null row for classifier-free guidance; label dropout
 * happens in the data, src/flow/path.ts).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import { patchDim } from "./config.ts";
import {
  type Grads,
  gradViews,
  type GraphContext,
  linear,
  linearBackward,
  named,
  type Views,
  views,
} from "./component.ts";
import { linearBackwardWeight, linearForward } from "../ops/linear.ts";
import { siluBackward, siluForward } from "../ops/elementwise.ts";
import { addPosEmbedForward, im2colForward } from "../ops/patch.ts";
import {
  FREQUENCY_EMBEDDING_SIZE,
  labelEmbedBackward,
  labelEmbedForward,
  timestepEmbeddingForward,
} from "../ops/embed.ts";

/** x_embedder + pos_embed: images [B, C, H, W] → tokens [B·T, D]. */
export class PatchEmbed {
  /** The patches [B·T, C·p·p] (im2col; the weight gradient reads them). */
  readonly cols: Tensor;
  readonly out: Tensor;
  private p: Views;

  constructor(readonly ctx: GraphContext) {
    const { B, T, cfg } = ctx;
    this.cols = ctx.tensor([B * T, patchDim(cfg)], "x_embedder.cols");
    this.out = ctx.tensor([B * T, cfg.hidden_size], "x_embedder.out");
    this.p = views(ctx.params, "x_embedder.proj.");
  }

  /** The conv weight [D, C, p, p] of `buf` viewed as the Linear weight [D, C·p·p]. */
  private weight(p: Views): Tensor {
    return { ...p("weight"), shape: [this.ctx.cfg.hidden_size, patchDim(this.ctx.cfg)] };
  }

  forward(x: Tensor): Dispatch[] {
    const { k, cfg, T } = this.ctx;
    // DiT's fixed 2D sin-cos positional embedding: the pos_embed slot, as [T, D].
    const pos: Tensor = { ...this.ctx.params.view("pos_embed"), shape: [T, cfg.hidden_size] };
    return [
      ...im2colForward(k, x, this.cols, cfg.patch_size),
      ...named(
        "x_embedder.proj",
        linearForward(k, this.cols, this.weight(this.p), this.p("bias"), this.out),
      ),
      ...addPosEmbedForward(k, this.out, pos),
    ];
  }

  /** Parameter gradients from dOut [B·T, D] (no input gradient: x is data). */
  backward(grads: Grads, dOut: Tensor): Dispatch[] {
    const g = gradViews(grads, "x_embedder.proj.");
    return named(
      "x_embedder.proj",
      linearBackwardWeight(this.ctx.k, dOut, this.cols, this.weight(g), g("bias"), {
        accumulate: g.accumulate,
      }),
    );
  }
}

/** t_embedder: t [B] (flow time in [0, 1], scaled by t_scale) → [B, D]. */
export class TimestepEmbedder {
  readonly freq: Tensor;
  readonly h1: Tensor;
  readonly h2: Tensor;
  readonly out: Tensor;
  private p: Views;

  constructor(readonly ctx: GraphContext) {
    const { B, cfg } = ctx, D = cfg.hidden_size;
    this.freq = ctx.tensor([B, FREQUENCY_EMBEDDING_SIZE], "t_embedder.freq");
    this.h1 = ctx.tensor([B, D], "t_embedder.mlp.0");
    this.h2 = ctx.tensor([B, D], "t_embedder.mlp.1");
    this.out = ctx.tensor([B, D], "t_embedder.out");
    this.p = views(ctx.params, "t_embedder.");
  }

  forward(t: Tensor): Dispatch[] {
    const { k, cfg } = this.ctx;
    return [
      ...timestepEmbeddingForward(k, t, this.freq, cfg.t_scale),
      ...linear(this.ctx, this.p, "mlp.0", this.freq, this.h1),
      ...siluForward(k, this.h1, this.h2),
      ...linear(this.ctx, this.p, "mlp.2", this.h2, this.out),
    ];
  }

  /** Parameter gradients from dOut [B, D] (no input gradient: t is data). */
  backward(grads: Grads, dOut: Tensor): Dispatch[] {
    const { k, B, cfg } = this.ctx, D = cfg.hidden_size;
    const g = gradViews(grads, "t_embedder.");
    const dh2 = this.ctx.scratch("d.t_embedder.mlp.1", [B, D]);
    const dh1 = this.ctx.scratch("d.t_embedder.mlp.0", [B, D]);
    return [
      ...linearBackward(this.ctx, this.p, g, "mlp.2", this.h2, dOut, dh2),
      ...siluBackward(k, this.h1, dh2, dh1),
      ...linearBackward(this.ctx, this.p, g, "mlp.0", this.freq, dh1),
    ];
  }
}

/** y_embedder: labels [B] (u32; num_classes = the null label) → [B, D]. */
export class LabelEmbedder {
  readonly out: Tensor;
  private table: Tensor;

  constructor(readonly ctx: GraphContext) {
    this.out = ctx.tensor([ctx.B, ctx.cfg.hidden_size], "y_embedder.out");
    this.table = ctx.params.view("y_embedder.embedding_table.weight");
  }

  forward(y: Tensor): Dispatch[] {
    return labelEmbedForward(this.ctx.k, this.table, y, this.out);
  }

  /** The table's gradient from dOut [B, D] (rows no label picked get 0, or keep theirs). */
  backward(grads: Grads, y: Tensor, dOut: Tensor): Dispatch[] {
    const table = grads.buffer.view("y_embedder.embedding_table.weight");
    return labelEmbedBackward(this.ctx.k, y, dOut, table, { accumulate: grads.accumulate });
  }
}
