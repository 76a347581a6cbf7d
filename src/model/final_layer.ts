/**
 * DiT's FinalLayer: shift, scale = adaLN_modulation(c).chunk(2); x = linear(modulate(norm_final(x),
 * shift, scale)); then DiT.unpatchify to the velocity [B, C, H, W] (learn_sigma=False).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import { patchDim } from "./config.ts";
import {
  type Grads,
  gradViews,
  type GraphContext,
  linear,
  linearBackward,
  type Views,
  views,
} from "./component.ts";
import { layerNormModulateBackward, layerNormModulateForward } from "../ops/norm.ts";
import { unpatchifyBackward, unpatchifyForward } from "../ops/patch.ts";

/** The two chunks of the final layer's modulation [B, 2·D]. */
export const FINAL_ADALN = { shift: 0, scale: 1 } as const;

export class FinalLayer {
  readonly mod: Tensor;
  readonly norm: Tensor;
  readonly stats: Tensor;
  /** linear output [B·T, p·p·C] (DiT's patch order). */
  readonly linearOut: Tensor;
  private p: Views;

  constructor(readonly ctx: GraphContext) {
    const { B, T, cfg } = ctx, BT = B * T, D = cfg.hidden_size;
    this.mod = ctx.tensor([B, 2 * D], "final_layer.adaLN_modulation");
    this.norm = ctx.tensor([BT, D], "final_layer.norm_final");
    this.stats = ctx.tensor([BT * 2], "final_layer.norm_final.stats");
    this.linearOut = ctx.tensor([BT, patchDim(cfg)], "final_layer.linear");
    this.p = views(ctx.params, "final_layer.");
  }

  /** out [B, C, H, W] = unpatchify(final_layer(x, sc)); x [B·T, D], sc = silu(c). */
  forward(x: Tensor, sc: Tensor, out: Tensor): Dispatch[] {
    const { ctx, p } = this, { k, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
    const { shift, scale } = FINAL_ADALN;
    return [
      ...linear(ctx, p, "adaLN_modulation.1", sc, this.mod),
      ...layerNormModulateForward(k, tok(x), this.mod, shift, scale, tok(this.norm), this.stats),
      ...linear(ctx, p, "linear", this.norm, this.linearOut),
      ...unpatchifyForward(k, this.linearOut, out, cfg.patch_size, cfg.in_channels),
    ];
  }

  /**
   * From dOut [B, C, H, W]: writes d(x) into `dres` (it starts the residual stream's gradient),
   * d(sc) into `dsc` (written: the blocks add theirs after), and the parameter gradients
   * (written, or added with `grads.accumulate`).
   */
  backward(
    grads: Grads,
    x: Tensor,
    sc: Tensor,
    dOut: Tensor,
    dres: Tensor,
    dsc: Tensor,
  ): Dispatch[] {
    const { ctx, p } = this, { k, B, T, cfg } = ctx, tok = (t: Tensor) => ctx.tokens(t);
    const g = gradViews(grads, "final_layer.");
    const { shift, scale } = FINAL_ADALN;
    const D = cfg.hidden_size;
    const dlin = ctx.scratch("d.final_layer.linear", [B * T, patchDim(cfg)]);
    const dnorm = ctx.scratch("d.blocks.norm", [B * T, D]);
    const dmod = ctx.scratch("d.final_layer.adaLN_modulation", [B, 2 * D]);
    const img = [B, cfg.in_channels, cfg.image_size, cfg.image_size];
    return [
      ...unpatchifyBackward(k, { ...dOut, shape: img }, dlin),
      ...linearBackward(ctx, p, g, "linear", this.norm, dlin, dnorm),
      ...layerNormModulateBackward(
        k,
        tok(x),
        this.mod,
        shift,
        scale,
        this.stats,
        tok(dnorm),
        tok(dres),
        dmod,
      ),
      ...linearBackward(ctx, p, g, "adaLN_modulation.1", sc, dmod, dsc),
    ];
  }
}
