/**
 * DiTBlock with adaLN-Zero conditioning (facebookresearch/DiT models.py):
 *   shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = adaLN_modulation(c).chunk(6)
 *   x = x + gate_msa · attn(modulate(norm1(x), shift_msa, scale_msa))
 *   x = x + gate_mlp · mlp(modulate(norm2(x), shift_mlp, scale_mlp))
 * adaLN_modulation is SiLU then Linear; the SiLU of c is computed once for all blocks (dit.ts)
 * and passed in as `sc`. The block records its own forward and backward, so it can be recomputed
 * on its own (activation checkpointing).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import { mlpHidden } from "./config.ts";
import { type GraphContext, linear, linearBackward, type Views, views } from "./component.ts";
import { geluBackward, geluForward } from "../ops/elementwise.ts";
import { layerNormModulateBackward, layerNormModulateForward } from "../ops/norm.ts";
import { gateResidualBackward, gateResidualForward } from "../ops/residual.ts";
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
  readonly proj: Tensor;
  /** x after the attention branch. */
  readonly h1: Tensor;
  readonly norm2: Tensor;
  readonly stats2: Tensor;
  readonly fc1: Tensor;
  readonly gelu: Tensor;
  readonly fc2: Tensor;
  /** The block's output. */
  readonly out: Tensor;
  private p: Views;

  constructor(readonly ctx: GraphContext, readonly index: number) {
    const { B, T, cfg } = ctx, BT = B * T, D = cfg.hidden_size, M = mlpHidden(cfg);
    const a = (shape: number[], name: string) => ctx.tensor(shape, `blocks.${index}.${name}`);
    this.mod = a([B, ADALN_CHUNKS * D], "adaLN_modulation");
    this.norm1 = a([BT, D], "norm1");
    this.stats1 = a([BT * 2], "norm1.stats");
    this.qkv = a([BT, 3 * D], "attn.qkv");
    this.attnAux = a(attentionAuxShape(B, T, D, cfg.num_heads), "attn.aux");
    this.attn = a([BT, D], "attn");
    this.proj = a([BT, D], "attn.proj");
    this.h1 = a([BT, D], "h1");
    this.norm2 = a([BT, D], "norm2");
    this.stats2 = a([BT * 2], "norm2.stats");
    this.fc1 = a([BT, M], "mlp.fc1");
    this.gelu = a([BT, M], "mlp.act");
    this.fc2 = a([BT, D], "mlp.fc2");
    this.out = a([BT, D], "out");
    this.p = views(ctx.params, `blocks.${index}.`);
  }

  /** out = block(x, sc): x [B·T, D] the hidden state, sc = silu(c) [B, D]. */
  forward(x: Tensor, sc: Tensor): Dispatch[] {
    const { ctx, p } = this, { k, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
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
      ...linear(ctx, p, "attn.proj", this.attn, this.proj),
      ...gateResidualForward(k, tok(x), tok(this.proj), this.mod, ADALN.gate_msa, tok(this.h1)),
      ...layerNormModulateForward(
        k,
        tok(this.h1),
        this.mod,
        ADALN.shift_mlp,
        ADALN.scale_mlp,
        tok(this.norm2),
        this.stats2,
      ),
      ...linear(ctx, p, "mlp.fc1", this.norm2, this.fc1),
      ...geluForward(k, this.fc1, this.gelu),
      ...linear(ctx, p, "mlp.fc2", this.gelu, this.fc2),
      ...gateResidualForward(
        k,
        tok(this.h1),
        tok(this.fc2),
        this.mod,
        ADALN.gate_mlp,
        tok(this.out),
      ),
    ];
  }

  /**
   * The backward, given the forward's input x and sc: `dres` [B·T, D] holds d(out) on entry and
   * d(x) on exit (the residual stream's gradient, updated in place); d(sc) is added into `dsc`;
   * parameter gradients are written into `grads`.
   */
  backward(grads: FlatBuffer, x: Tensor, sc: Tensor, dres: Tensor, dsc: Tensor): Dispatch[] {
    const { ctx, p } = this, { k, B, T, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
    const g = views(grads, `blocks.${this.index}.`);
    const BT = B * T, D = cfg.hidden_size, M = mlpHidden(cfg);
    // Scratch shared by every block (they run one after another).
    const dmod = ctx.scratch("d.blocks.adaLN_modulation", [B, ADALN_CHUNKS * D]);
    const dbranch = ctx.scratch("d.blocks.branch", [BT, D]); // d fc2, d proj
    const dnorm = ctx.scratch("d.blocks.norm", [BT, D]); // d norm2, d attn, d norm1
    const dgelu = ctx.scratch("d.blocks.mlp.act", [BT, M]);
    const dfc1 = ctx.scratch("d.blocks.mlp.fc1", [BT, M]);
    const dqkv = ctx.scratch("d.blocks.attn.qkv", [BT, 3 * D]);
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
      ...linearBackward(ctx, p, g, "mlp.fc2", this.gelu, dbranch, dgelu),
      ...geluBackward(k, this.fc1, dgelu, dfc1),
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
