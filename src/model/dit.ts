/**
 * DiT2D on the GPU: facebookresearch/DiT's DiT (learn_sigma=False) as recorded dispatches for one
 * batch size. Its components mirror DiT's modules (x_embedder, t_embedder, y_embedder, blocks.N,
 * final_layer), each owning its activations and recording its forward and backward; parameters
 * and gradients are views into flat buffers of paramLayout(cfg).
 *
 * Two kinds of graph: a training graph keeps every block's activations for the backward; an
 * inference-only graph (`inference: true`) keeps none: its blocks share one set of activations
 * and add into one residual stream in place (memory ≈ one block's), with the same kernels, so its
 * output equals the training graph's forward bit for bit. A training graph with `recompute`
 * (activation checkpointing) keeps only each block's output and records a block's forward again
 * before its backward: the same kernels on the same inputs, so the same gradients bit for bit.
 *
 * Micro-batches: the forward and backward can be recorded on other `t`/`y` input tensors of the
 * same shape (`GraphInputs`), and the backward can add the parameter gradients into `grads`.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import { type DiTConfig, numTokens } from "./config.ts";
import { type Grads, GraphContext, type GraphOptions } from "./component.ts";
import { LabelEmbedder, PatchEmbed, TimestepEmbedder } from "./embedders.ts";
import { DiTBlock } from "./block.ts";
import { FinalLayer } from "./final_layer.ts";
import { siluBackward, siluForward } from "../ops/elementwise.ts";
import { addForward } from "../ops/embed.ts";

/** The time and label inputs of one recording (default: the graph's own `t` and `y`). */
export interface GraphInputs {
  /** [B] flow times (f32). */
  t: Tensor;
  /** [B] labels (u32). */
  y: Tensor;
}

/** How `backward` is recorded. */
export interface BackwardOptions {
  /** Add the parameter gradients into `grads` instead of writing them. */
  accumulate?: boolean;
  /** The labels the forward read (default: the graph's `y`). */
  inputs?: GraphInputs;
}

/**
 * The activations and dispatches of DiT2D for one batch size B. Write the inputs `x` [B, C, H, W],
 * `t` [B] (flow time in [0, 1]) and `y` [B] (u32 labels; num_classes = null) before submitting
 * `forward()`; `out` [B, C, H, W] is the velocity.
 */
export class DiTGraph {
  readonly x: Tensor;
  readonly t: Tensor;
  readonly y: Tensor;
  readonly out: Tensor;
  readonly x_embedder: PatchEmbed;
  readonly t_embedder: TimestepEmbedder;
  /** Absent for unconditional models (num_classes 0). */
  readonly y_embedder?: LabelEmbedder;
  readonly blocks: DiTBlock[];
  readonly final_layer: FinalLayer;
  /** c = t_emb + y_emb (DiT.forward), and silu(c): every adaLN_modulation's input. */
  readonly c: Tensor;
  readonly sc: Tensor;
  private ctx: GraphContext;
  private recorded?: Dispatch[];

  constructor(
    k: Kernels,
    readonly cfg: DiTConfig,
    params: FlatBuffer,
    readonly B: number,
    opts: GraphOptions = {},
  ) {
    const ctx = this.ctx = new GraphContext(k, cfg, params, B, numTokens(cfg), opts);
    const { image_size: H, in_channels: C, hidden_size: D } = cfg;
    this.x = ctx.tensor([B, C, H, H], "x");
    this.t = ctx.tensor([B], "t");
    this.y = ctx.tensor([B], "y");
    this.x_embedder = new PatchEmbed(ctx);
    this.t_embedder = new TimestepEmbedder(ctx);
    if (cfg.num_classes > 0) this.y_embedder = new LabelEmbedder(ctx);
    this.c = this.y_embedder ? ctx.tensor([B, D], "c") : this.t_embedder.out;
    this.sc = ctx.tensor([B, D], "silu_c");
    // Inference: the blocks update the patch embedding's output in place (the one stream).
    const stream = ctx.inference ? this.x_embedder.out : undefined;
    this.blocks = Array.from({ length: cfg.depth }, (_, i) => new DiTBlock(ctx, i, stream));
    this.final_layer = new FinalLayer(ctx);
    this.out = ctx.tensor([B, C, H, H], "out");
  }

  /** Tokens per image. */
  get T(): number {
    return this.ctx.T;
  }

  /** True for an inference-only graph (no backward). */
  get inference(): boolean {
    return this.ctx.inference;
  }

  /** True when the backward recomputes the blocks' activations (activation checkpointing). */
  get recompute(): boolean {
    return this.ctx.recompute;
  }

  /** The hidden state entering block i (or the final layer when i = depth). */
  private hidden(i: number): Tensor {
    return i === 0 ? this.x_embedder.out : this.blocks[i - 1].out;
  }

  /**
   * The forward pass (reads x, t, y; writes out), recorded on first use and then reused; with
   * `inputs`, recorded anew reading those t and y.
   */
  forward(inputs?: GraphInputs): Dispatch[] {
    if (inputs) return this.record(inputs);
    this.recorded ??= this.record({ t: this.t, y: this.y });
    return this.recorded;
  }

  private record(inputs: GraphInputs): Dispatch[] {
    const { k } = this.ctx, y = this.y_embedder;
    const cond = y
      ? [...y.forward(inputs.y), ...addForward(k, this.t_embedder.out, y.out, this.c)]
      : [];
    return [
      ...this.x_embedder.forward(this.x),
      ...this.t_embedder.forward(inputs.t),
      ...cond,
      ...siluForward(k, this.c, this.sc),
      ...this.blocks.flatMap((b, i) => b.forward(this.hidden(i), this.sc)),
      ...this.final_layer.forward(this.hidden(this.cfg.depth), this.sc, this.out),
    ];
  }

  /**
   * The backward pass, recorded: given dOut [B, C, H, W] (the loss gradient w.r.t. `out`), writes
   * (or adds, `accumulate`) every trainable parameter's gradient into `grads` (paramLayout order).
   * Uses the activations of the last forward; a recomputing graph records each block's forward
   * again before its backward (but the last block's, whose activations the forward left).
   */
  backward(dOut: Tensor, grads: FlatBuffer, opts: BackwardOptions = {}): Dispatch[] {
    const { ctx, cfg } = this, { k, B, T } = ctx, D = cfg.hidden_size;
    if (ctx.inference) throw new Error("DiTGraph: an inference-only graph has no backward");
    const g: Grads = { buffer: grads, accumulate: opts.accumulate ?? false };
    // The residual stream's gradient, carried from the final layer down through the blocks.
    const dres = ctx.scratch("d.residual", [B * T, D]);
    const dsc = ctx.scratch("d.silu_c", [B, D]);
    const dc = ctx.scratch("d.c", [B, D]);
    const depth = cfg.depth;
    const blocks = this.blocks.map((b, i) => [
      ...(ctx.recompute && i < depth - 1 ? b.forward(this.hidden(i), this.sc) : []),
      ...b.backward(g, this.hidden(i), this.sc, dres, dsc),
    ]);
    return [
      ...this.final_layer.backward(g, this.hidden(depth), this.sc, dOut, dres, dsc),
      ...blocks.reverse().flat(),
      ...this.x_embedder.backward(g, dres),
      ...siluBackward(k, this.c, dsc, dc),
      ...(this.y_embedder?.backward(g, opts.inputs?.y ?? this.y, dc) ?? []),
      ...this.t_embedder.backward(g, dc),
    ];
  }
}
