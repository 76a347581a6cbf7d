/**
 * DiTBlock with adaLN-Zero conditioning (facebookresearch/DiT models.py):
 *   shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = adaLN_modulation(c).chunk(6)
 *   x = x + gate_msa · attn(modulate(norm1(x), shift_msa, scale_msa))
 *   x = x + gate_mlp · mlp(modulate(norm2(x), shift_mlp, scale_mlp))
 * adaLN_modulation is SiLU then Linear; the SiLU of c is computed once for all blocks (dit.ts)
 * and passed in as `sc`. The block records its own forward and backward, so it can be recomputed
 * on its own (activation checkpointing).
 *
 * Fusions: GELU is fc1's GEMM epilogue (its pre-activation stored for the backward), and each
 * branch's gate·y + residual is the epilogue of proj's and fc2's GEMMs (y stored for d gate); in
 * the backward, gelu' is fc2's dX epilogue. LayerNorm + modulate is one kernel, not fused into the
 * next GEMM: the GEMM generator has no prologue, and its operand tiles are loaded raw into
 * workgroup memory, so normalising there would need the row statistics first anyway (a separate
 * pass) and then cost a modulate per element per column tile re-read (D/BN = 6 times for qkv).
 *
 * Mixed precision: the residual stream (x, h1, out), adaLN's mod, the LayerNorm statistics and
 * attention's row statistics are f32; the GEMM operands and stored activations of the token path
 * (norm1, qkv, attn, proj, norm2, fc1, gelu, fc2) and their gradients are f16 (`ctx.act`).
 *
 * Inference-only graphs (ctx.inference): the blocks share one set of activations, and the branch
 * GEMMs add gate·y into the residual stream in place (`accumulate`), so out = h1 = x.
 * Recomputing graphs (ctx.recompute, activation checkpointing): the blocks share one set of
 * activations but each keeps its own output; the graph records a block's forward again before
 * its backward.
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import { mlpHidden } from "./config.ts";
import {
  type Grads,
  gradViews,
  type GraphContext,
  linear,
  linearBackward,
  type Views,
} from "./component.ts";
import { layerNormModulateBackward, layerNormModulateForward } from "../ops/norm.ts";
import { gateResidualBackward } from "../ops/residual.ts";
import { attentionAuxShape, attentionBackward, attentionForward } from "../ops/attention.ts";

/** The six chunks of a block's modulation [B, 6·D], in DiT's `.chunk(6)` order. */
export const ADALN = {
  shift_msa: 0,
  scale_msa: 1,
  gate_msa: 2,
  shift_mlp: 3,
  scale_mlp: 4,
  gate_mlp: 5,
} as const;
export const ADALN_CHUNKS = Object.keys(ADALN).length;

export class DiTBlock {
  /** adaLN_modulation(c) [B, 6·D]: the chunks of `ADALN`. */
  readonly mod: Tensor;
  readonly norm1: Tensor;
  readonly stats1: Tensor;
  readonly qkv: Tensor;
  /** Attention's saved row statistics (see attentionAuxShape). */
  readonly attnAux: Tensor;
  readonly attn: Tensor;
  /** proj's output before the gate (training: d gate_msa reads it). */
  readonly proj?: Tensor;
  /** x after the attention branch (the stream itself in an inference graph). */
  readonly h1: Tensor;
  readonly norm2: Tensor;
  readonly stats2: Tensor;
  /** fc1's pre-activation (training: the backward of the fused GELU reads it). */
  readonly fc1?: Tensor;
  readonly gelu: Tensor;
  /** fc2's output before the gate (training). */
  readonly fc2?: Tensor;
  /** The block's output (the stream itself in an inference graph; its own tensor in training). */
  readonly out: Tensor;
  private p: Views;

  /**
   * `stream`: an inference graph's residual stream [B·T, D], updated in place (training graphs
   * allocate h1 and out per block).
   */
  constructor(readonly ctx: GraphContext, readonly index: number, stream?: Tensor) {
    const { B, T, cfg } = ctx, BT = B * T, D = cfg.hidden_size, M = mlpHidden(cfg);
    // f16 in mixed precision unless `f32`
    const a = (shape: number[], name: string, f32 = false) =>
      ctx.activation(`blocks.${name}`, shape, `blocks.${index}.${name}`, f32 ? undefined : ctx.act);
    const f32 = true;
    if (ctx.inference !== (stream !== undefined)) {
      throw new Error("DiTBlock: an inference graph passes its residual stream, training none");
    }
    this.mod = a([B, ADALN_CHUNKS * D], "adaLN_modulation", f32);
    this.norm1 = a([BT, D], "norm1");
    this.stats1 = a([BT * 2], "norm1.stats", f32);
    this.qkv = a([BT, 3 * D], "attn.qkv");
    this.attnAux = a(attentionAuxShape(B, T, D, cfg.num_heads), "attn.aux", f32);
    this.attn = a([BT, D], "attn");
    this.norm2 = a([BT, D], "norm2");
    this.stats2 = a([BT * 2], "norm2.stats", f32);
    this.gelu = a([BT, M], "mlp.act");
    if (stream) {
      this.h1 = this.out = stream;
    } else {
      this.proj = a([BT, D], "attn.proj");
      this.h1 = a([BT, D], "h1", f32);
      this.fc1 = a([BT, M], "mlp.fc1");
      this.fc2 = a([BT, D], "mlp.fc2");
      // the next block's input: kept when the rest is recomputed
      this.out = ctx.tensor([BT, D], `blocks.${index}.out`);
    }
    this.p = ctx.views(`blocks.${index}.`);
  }

  /**
   * out = block(x, sc): x [B·T, D] the hidden state, sc = silu(c) [B, D]. In an inference graph
   * x is the stream passed to the constructor, updated in place.
   */
  forward(x: Tensor, sc: Tensor): Dispatch[] {
    const { ctx, p } = this, { k, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
    const inf = ctx.inference;
    if (inf && x !== this.out) throw new Error("DiTBlock: an inference block updates its stream");
    const gate = (chunk: number) => ({ gate: { mod: this.mod, chunk } });
    // Branch GEMM epilogue: out = residual + gate·y (y kept for d gate), or stream += gate·y.
    const branch = (chunk: number, residual: Tensor, pre?: Tensor) =>
      inf ? { ...gate(chunk), accumulate: true } : { ...gate(chunk), residual, pre };
    return [
      ...linear(ctx, p, "adaLN_modulation.1", sc, this.mod),
      ...layerNormModulateForward(
        k,
        tok(x),
        this.mod,
        ADALN.shift_msa,
        ADALN.scale_msa,
        tok(this.norm1),
        this.stats1,
      ),
      ...linear(ctx, p, "attn.qkv", this.norm1, this.qkv),
      ...attentionForward(k, tok(this.qkv), tok(this.attn), this.attnAux, cfg.num_heads),
      ...linear(ctx, p, "attn.proj", this.attn, this.h1, branch(ADALN.gate_msa, x, this.proj)),
      ...layerNormModulateForward(
        k,
        tok(this.h1),
        this.mod,
        ADALN.shift_mlp,
        ADALN.scale_mlp,
        tok(this.norm2),
        this.stats2,
      ),
      ...linear(ctx, p, "mlp.fc1", this.norm2, this.gelu, { gelu: true, pre: this.fc1 }),
      ...linear(ctx, p, "mlp.fc2", this.gelu, this.out, branch(ADALN.gate_mlp, this.h1, this.fc2)),
    ];
  }

  /**
   * The backward, given the forward's input x and sc: `dres` [B·T, D] (f32) holds d(out) on
   * entry and d(x) on exit (the residual stream's gradient, updated in place); d(sc) is added
   * into `dsc`; parameter gradients (f32) are written (or added) into `grads`.
   */
  backward(grads: Grads, x: Tensor, sc: Tensor, dres: Tensor, dsc: Tensor): Dispatch[] {
    const { ctx, p } = this, { k, B, T, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
    if (!this.proj || !this.fc1 || !this.fc2) throw new Error("DiTBlock: no backward in inference");
    const g = gradViews(grads, `blocks.${this.index}.`);
    const BT = B * T, D = cfg.hidden_size, M = mlpHidden(cfg), h = ctx.act;
    // Scratch shared by every block (they run one after another); f16 in mixed precision.
    const dmod = ctx.scratch("d.blocks.adaLN_modulation", [B, ADALN_CHUNKS * D]);
    const dbranch = ctx.scratch("d.blocks.branch", [BT, D], h); // d fc2, d proj
    const dnorm = ctx.scratch("d.blocks.norm", [BT, D], h); // d norm2, d attn, d norm1
    const dfc1 = ctx.scratch("d.blocks.mlp.fc1", [BT, M], h);
    const dqkv = ctx.scratch("d.blocks.attn.qkv", [BT, 3 * D], h);
    const accumulate = { accumulate: true };
    return [
      // out = h1 + gate_mlp · fc2(gelu(fc1(norm2)))
      ...gateResidualBackward(
        k,
        tok(this.fc2),
        this.mod,
        ADALN.gate_mlp,
        tok(dres),
        tok(dbranch),
        dmod,
      ),
      // d fc1 = (d gelu) ⊙ gelu'(fc1): fc2's dX epilogue
      ...linearBackward(ctx, p, g, "mlp.fc2", this.gelu, dbranch, dfc1, false, {
        geluGrad: this.fc1,
      }),
      ...linearBackward(ctx, p, g, "mlp.fc1", this.norm2, dfc1, dnorm),
      ...layerNormModulateBackward(
        k,
        tok(this.h1),
        this.mod,
        ADALN.shift_mlp,
        ADALN.scale_mlp,
        this.stats2,
        tok(dnorm),
        tok(dres),
        dmod,
        accumulate,
      ),
      // h1 = x + gate_msa · proj(attn(qkv(norm1)))
      ...gateResidualBackward(
        k,
        tok(this.proj),
        this.mod,
        ADALN.gate_msa,
        tok(dres),
        tok(dbranch),
        dmod,
      ),
      ...linearBackward(ctx, p, g, "attn.proj", this.attn, dbranch, dnorm),
      ...attentionBackward(
        k,
        tok(this.qkv),
        tok(this.attn),
        this.attnAux,
        tok(dnorm),
        tok(dqkv),
        cfg.num_heads,
      ),
      ...linearBackward(ctx, p, g, "attn.qkv", this.norm1, dqkv, dnorm),
      ...layerNormModulateBackward(
        k,
        tok(x),
        this.mod,
        ADALN.shift_msa,
        ADALN.scale_msa,
        this.stats1,
        tok(dnorm),
        tok(dres),
        dmod,
        accumulate,
      ),
      // mod = adaLN_modulation(c): d(sc) sums over every block
      ...linearBackward(ctx, p, g, "adaLN_modulation.1", sc, dmod, dsc, true),
    ];
  }
}
