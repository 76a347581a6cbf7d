/**
 * The VQ-VAE's basic units, each holding its output activation and recording its forward and
 * backward dispatches: Conv (nn.Conv2d), Norm (nn.GroupNorm), Act (SiLU or ReLU) and Upsample
 * (nearest ×2). Activations are channels-last (NHWC); weights and gradients are views into flat
 * buffers by their state_dict names. A graph shares one `Ctx`: the kernels, the flat buffers, the
 * column scratch of every convolution, and the gradient tensor of each activation.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import {
  colsShape,
  conv2dBackward,
  conv2dForward,
  type ConvGeometry,
  convOut,
  isPointwise,
} from "../ops/conv.ts";
import { groupNormBackward, groupNormForward } from "../ops/groupnorm.ts";
import { reluBackward, reluForward, siluBackward, siluForward } from "../ops/elementwise.ts";
import { upsampleBackward, upsampleForward } from "../ops/upsample.ts";
import type { Activation } from "./config.ts";

/** A scratch tensor sized by the largest reservation, allocated on first use. */
export class Scratch {
  private size = 0;
  private t?: Tensor;

  constructor(private k: Kernels, private label: string) {}

  reserve(n: number): void {
    if (this.t) throw new Error(`${this.label}: reserved after first use`);
    this.size = Math.max(this.size, n);
  }

  get(): Tensor {
    this.t ??= this.k.tensor([Math.max(1, this.size)], this.label);
    return this.t;
  }
}

/** What the units of one graph share. */
export class Ctx {
  readonly cols: Scratch;
  readonly dcols: Scratch;
  /** Gradients of the trainable weights; set before recording a backward. */
  grads: FlatBuffer | null = null;
  private dmap = new Map<Tensor, Tensor>();

  constructor(readonly k: Kernels, readonly params: FlatBuffer, readonly B: number) {
    this.cols = new Scratch(k, "conv columns");
    this.dcols = new Scratch(k, "conv column gradients");
  }

  /** A weight by its state_dict name. */
  w(name: string): Tensor {
    return this.params.view(name);
  }

  /** A weight's gradient by its state_dict name. */
  g(name: string): Tensor {
    if (!this.grads) throw new Error("vqvae: no gradient buffer to record a backward into");
    return this.grads.view(name);
  }

  tensor(shape: number[], label: string): Tensor {
    return this.k.tensor(shape, label);
  }

  /** The gradient tensor of activation `t` (same shape), allocated once. */
  d(t: Tensor): Tensor {
    let g = this.dmap.get(t);
    if (!g) {
      g = this.k.tensor(t.shape, "grad");
      this.dmap.set(t, g);
    }
    return g;
  }
}

/** nn.Conv2d(cin, cout, k, stride, pad) on NHWC x (or an NCHW image with layout "nchw"). */
export class Conv {
  readonly y: Tensor;
  private geo: ConvGeometry;

  constructor(
    private ctx: Ctx,
    readonly name: string,
    readonly x: Tensor,
    cout: number,
    kernel: number,
    stride: number,
    pad: number,
    private layout: "nhwc" | "nchw" = "nhwc",
  ) {
    this.geo = { kernel, stride, pad };
    const [B, a, b, c] = x.shape;
    const [H, W] = layout === "nchw" ? [b, c] : [a, b];
    this.y = ctx.tensor([B, convOut(H, this.geo), convOut(W, this.geo), cout], name);
    if (!isPointwise(this.geo, layout)) {
      const [rows, cols] = colsShape(x, this.geo, layout);
      ctx.cols.reserve(rows * cols);
      ctx.dcols.reserve(rows * cols);
    }
  }

  private scratch(s: Scratch): Tensor | null {
    return isPointwise(this.geo, this.layout) ? null : s.get();
  }

  forward(): Dispatch[] {
    const { ctx, name } = this;
    return conv2dForward(
      ctx.k,
      this.x,
      ctx.w(`${name}.weight`),
      ctx.w(`${name}.bias`),
      this.y,
      this.scratch(ctx.cols),
      this.geo,
      { layout: this.layout },
    );
  }

  /** dW, db into the gradient buffer; dx (null: x is data) written or accumulated. */
  backward(dy: Tensor, dx: Tensor | null, accumulate = false): Dispatch[] {
    const { ctx, name } = this;
    return conv2dBackward(
      ctx.k,
      this.x,
      ctx.w(`${name}.weight`),
      dy,
      dx,
      ctx.g(`${name}.weight`),
      ctx.g(`${name}.bias`),
      this.scratch(ctx.cols),
      dx ? this.scratch(ctx.dcols) : null,
      this.geo,
      { layout: this.layout, accumulateDx: accumulate },
    );
  }
}

/** nn.GroupNorm(groups, C) over NHWC x. */
export class Norm {
  readonly y: Tensor;
  private stats: Tensor;

  constructor(private ctx: Ctx, readonly name: string, readonly x: Tensor, private groups: number) {
    this.y = ctx.tensor(x.shape, name);
    this.stats = ctx.tensor([x.shape[0] * groups * 2], `${name}.stats`);
  }

  forward(): Dispatch[] {
    const { ctx, name } = this;
    return groupNormForward(
      ctx.k,
      this.x,
      ctx.w(`${name}.weight`),
      ctx.w(`${name}.bias`),
      this.y,
      this.stats,
      this.groups,
    );
  }

  backward(dy: Tensor, dx: Tensor, accumulate = false): Dispatch[] {
    const { ctx, name } = this;
    return groupNormBackward(
      ctx.k,
      this.x,
      ctx.w(`${name}.weight`),
      this.stats,
      dy,
      dx,
      ctx.g(`${name}.weight`),
      ctx.g(`${name}.bias`),
      this.groups,
      { accumulate },
    );
  }
}

/** SiLU or ReLU. */
export class Act {
  readonly y: Tensor;

  constructor(private ctx: Ctx, readonly x: Tensor, private kind: Activation) {
    this.y = ctx.tensor(x.shape, kind);
  }

  forward(): Dispatch[] {
    const f = this.kind === "relu" ? reluForward : siluForward;
    return f(this.ctx.k, this.x, this.y);
  }

  backward(dy: Tensor, dx: Tensor): Dispatch[] {
    const f = this.kind === "relu" ? reluBackward : siluBackward;
    return f(this.ctx.k, this.x, dy, dx);
  }
}

/** nn.Upsample(scale_factor=2, mode="nearest") on NHWC x. */
export class Upsample {
  readonly y: Tensor;

  constructor(private ctx: Ctx, readonly x: Tensor) {
    const [B, H, W, C] = x.shape;
    this.y = ctx.tensor([B, 2 * H, 2 * W, C], "upsample");
  }

  forward(): Dispatch[] {
    return upsampleForward(this.ctx.k, this.x, this.y, 2);
  }

  backward(dy: Tensor, dx: Tensor): Dispatch[] {
    return upsampleBackward(this.ctx.k, dy, dx, 2);
  }
}
