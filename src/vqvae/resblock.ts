/**
 * A residual block: y = x + conv2(act(norm2(conv1(act(norm1(x)))))), 3×3 convolutions at a fixed
 * width (taming-transformers' ResnetBlock without dropout or timestep input).
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import { addForward } from "../ops/embed.ts";
import type { Activation } from "./config.ts";
import { Act, Conv, type Ctx, Norm } from "./layers.ts";

export class ResBlock {
  readonly y: Tensor;
  private norm1: Norm;
  private act1: Act;
  private conv1: Conv;
  private norm2: Norm;
  private act2: Act;
  private conv2: Conv;

  constructor(
    private ctx: Ctx,
    name: string,
    readonly x: Tensor,
    groups: number,
    act: Activation,
  ) {
    const C = x.shape[3];
    this.norm1 = new Norm(ctx, `${name}.norm1`, x, groups);
    this.act1 = new Act(ctx, this.norm1.y, act);
    this.conv1 = new Conv(ctx, `${name}.conv1`, this.act1.y, C, 3, 1, 1);
    this.norm2 = new Norm(ctx, `${name}.norm2`, this.conv1.y, groups);
    this.act2 = new Act(ctx, this.norm2.y, act);
    this.conv2 = new Conv(ctx, `${name}.conv2`, this.act2.y, C, 3, 1, 1);
    this.y = ctx.tensor(x.shape, `${name}.out`);
  }

  forward(): Dispatch[] {
    return [
      ...this.norm1.forward(),
      ...this.act1.forward(),
      ...this.conv1.forward(),
      ...this.norm2.forward(),
      ...this.act2.forward(),
      ...this.conv2.forward(),
      ...addForward(this.ctx.k, this.x, this.conv2.y, this.y),
    ];
  }

  /**
   * `dres` holds the gradient of y on entry and that of x on exit: the branch's gradient is
   * added into it in place (the skip connection passes it through unchanged).
   */
  backward(dres: Tensor): Dispatch[] {
    const d = (t: Tensor) => this.ctx.d(t);
    return [
      ...this.conv2.backward(dres, d(this.act2.y)),
      ...this.act2.backward(d(this.act2.y), d(this.norm2.y)),
      ...this.norm2.backward(d(this.norm2.y), d(this.conv1.y)),
      ...this.conv1.backward(d(this.conv1.y), d(this.act1.y)),
      ...this.act1.backward(d(this.act1.y), d(this.norm1.y)),
      ...this.norm1.backward(d(this.norm1.y), dres, true),
    ];
  }
}
