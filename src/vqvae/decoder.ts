/**
 * The decoder, mirroring the encoder: z_q [B, H/4, W/4, D] to an NHWC image [B, H, W, C]:
 * conv_in Conv 3×3 (D → ch); res_blocks residual blocks; norm_out GroupNorm, act;
 * up.0 nearest ×2 then Conv 3×3 (ch → ch/2), act; up.1 nearest ×2 then Conv 3×3 (ch/2 → C).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import type { VQVAEConfig } from "./config.ts";
import { Act, Conv, type Ctx, Norm, Upsample } from "./layers.ts";
import { ResBlock } from "./resblock.ts";

export class Decoder {
  /** The reconstruction [B, H, W, C] (NHWC). */
  readonly out: Tensor;
  private convIn: Conv;
  private res: ResBlock[] = [];
  private norm: Norm;
  private act: Act;
  private up0: Upsample;
  private conv0: Conv;
  private act0: Act;
  private up1: Upsample;
  private conv1: Conv;

  constructor(private ctx: Ctx, cfg: VQVAEConfig, readonly zq: Tensor) {
    const C = cfg.channels;
    this.convIn = new Conv(ctx, "decoder.conv_in", zq, C, 3, 1, 1);
    let h = this.convIn.y;
    for (let i = 0; i < cfg.res_blocks; i++) {
      const r = new ResBlock(ctx, `decoder.res.${i}`, h, cfg.groups, cfg.act);
      this.res.push(r);
      h = r.y;
    }
    this.norm = new Norm(ctx, "decoder.norm_out", h, cfg.groups);
    this.act = new Act(ctx, this.norm.y, cfg.act);
    this.up0 = new Upsample(ctx, this.act.y);
    this.conv0 = new Conv(ctx, "decoder.up.0.conv", this.up0.y, C / 2, 3, 1, 1);
    this.act0 = new Act(ctx, this.conv0.y, cfg.act);
    this.up1 = new Upsample(ctx, this.act0.y);
    this.conv1 = new Conv(ctx, "decoder.up.1.conv", this.up1.y, cfg.in_channels, 3, 1, 1);
    this.out = this.conv1.y;
  }

  forward(): Dispatch[] {
    return [
      ...this.convIn.forward(),
      ...this.res.flatMap((r) => r.forward()),
      ...this.norm.forward(),
      ...this.act.forward(),
      ...this.up0.forward(),
      ...this.conv0.forward(),
      ...this.act0.forward(),
      ...this.up1.forward(),
      ...this.conv1.forward(),
    ];
  }

  /** Weight gradients, and dzq (written), from dout [B, H, W, C]. */
  backward(dout: Tensor, dzq: Tensor): Dispatch[] {
    const d = (t: Tensor) => this.ctx.d(t);
    const dres = d(this.convIn.y); // the residual stream's gradient, updated in place
    return [
      ...this.conv1.backward(dout, d(this.up1.y)),
      ...this.up1.backward(d(this.up1.y), d(this.act0.y)),
      ...this.act0.backward(d(this.act0.y), d(this.conv0.y)),
      ...this.conv0.backward(d(this.conv0.y), d(this.up0.y)),
      ...this.up0.backward(d(this.up0.y), d(this.act.y)),
      ...this.act.backward(d(this.act.y), d(this.norm.y)),
      ...this.norm.backward(d(this.norm.y), dres),
      ...this.res.toReversed().flatMap((r) => r.backward(dres)),
      ...this.convIn.backward(dres, dzq),
    ];
  }
}
