/**
 * The encoder: an NCHW image [B, C, H, W] to z_e [B, H/4, W/4, D] (NHWC):
 * down.0 Conv 4×4/2 (C → ch/2), act; down.1 Conv 4×4/2 (ch/2 → ch), act; conv_mid Conv 3×3;
 * res_blocks residual blocks; norm_out GroupNorm, act; conv_out Conv 1×1 (ch → D).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import type { VQVAEConfig } from "./config.ts";
import { Act, Conv, type Ctx, Norm } from "./layers.ts";
import { ResBlock } from "./resblock.ts";

export class Encoder {
  /** z_e [B, H/4, W/4, D]. */
  readonly ze: Tensor;
  private down0: Conv;
  private act0: Act;
  private down1: Conv;
  private act1: Act;
  private mid: Conv;
  private res: ResBlock[] = [];
  private norm: Norm;
  private act: Act;
  private out: Conv;

  constructor(private ctx: Ctx, cfg: VQVAEConfig, readonly x: Tensor) {
    const C = cfg.channels;
    this.down0 = new Conv(ctx, "encoder.down.0", x, C / 2, 4, 2, 1, "nchw");
    this.act0 = new Act(ctx, this.down0.y, cfg.act);
    this.down1 = new Conv(ctx, "encoder.down.1", this.act0.y, C, 4, 2, 1);
    this.act1 = new Act(ctx, this.down1.y, cfg.act);
    this.mid = new Conv(ctx, "encoder.conv_mid", this.act1.y, C, 3, 1, 1);
    let h = this.mid.y;
    for (let i = 0; i < cfg.res_blocks; i++) {
      const r = new ResBlock(ctx, `encoder.res.${i}`, h, cfg.groups, cfg.act);
      this.res.push(r);
      h = r.y;
    }
    this.norm = new Norm(ctx, "encoder.norm_out", h, cfg.groups);
    this.act = new Act(ctx, this.norm.y, cfg.act);
    this.out = new Conv(ctx, "encoder.conv_out", this.act.y, cfg.code_dim, 1, 1, 0);
    this.ze = this.out.y;
  }

  forward(): Dispatch[] {
    return [
      ...this.down0.forward(),
      ...this.act0.forward(),
      ...this.down1.forward(),
      ...this.act1.forward(),
      ...this.mid.forward(),
      ...this.res.flatMap((r) => r.forward()),
      ...this.norm.forward(),
      ...this.act.forward(),
      ...this.out.forward(),
    ];
  }

  /** Weight gradients from dze (the image is data: no input gradient). */
  backward(dze: Tensor): Dispatch[] {
    const d = (t: Tensor) => this.ctx.d(t);
    const dres = d(this.mid.y); // the residual stream's gradient, updated in place by each block
    return [
      ...this.out.backward(dze, d(this.act.y)),
      ...this.act.backward(d(this.act.y), d(this.norm.y)),
      ...this.norm.backward(d(this.norm.y), dres),
      ...this.res.toReversed().flatMap((r) => r.backward(dres)),
      ...this.mid.backward(dres, d(this.act1.y)),
      ...this.act1.backward(d(this.act1.y), d(this.down1.y)),
      ...this.down1.backward(d(this.down1.y), d(this.act0.y)),
      ...this.act0.backward(d(this.act0.y), d(this.down0.y)),
      ...this.down0.backward(d(this.down0.y), null),
    ];
  }
}
