/**
 * What the DiT components share: the graph context (kernels, config, batch geometry, parameter
 * buffer, scratch pool), named views of a component's parameters and gradients, and the Linear
 * layer every component records. Each component (embedders.ts, block.ts, final_layer.ts) owns its
 * activations and records its own forward and backward, as DiT's modules do.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "./config.ts";
import { linearBackwardInput, linearBackwardWeight, linearForward } from "../ops/linear.ts";

/** Parameter (or gradient) views of one component: `p("mlp.fc1.weight")` under its prefix. */
export type Views = (name: string) => Tensor;

/** The views of `buf` (params or grads of paramLayout(cfg)) under a DiT prefix. */
export function views(buf: FlatBuffer, prefix: string): Views {
  return (name) => buf.view(prefix + name);
}

/** One batch size's recording context. */
export class GraphContext {
  /** Tokens per image. */
  readonly T: number;
  private pool = new Map<string, Tensor>();

  constructor(
    readonly k: Kernels,
    readonly cfg: DiTConfig,
    /** Parameters (training or EMA weights), paramLayout(cfg). */
    readonly params: FlatBuffer,
    readonly B: number,
    T: number,
  ) {
    this.T = T;
  }

  /** A new activation tensor (kept for the backward). */
  tensor(shape: number[], label: string): Tensor {
    return this.k.tensor(shape, label);
  }

  /**
   * A backward scratch tensor shared by every component that asks for `role` (components run
   * one after another, so e.g. every block reuses one "d.mlp" buffer). Allocated on first use.
   */
  scratch(role: string, shape: number[]): Tensor {
    let t = this.pool.get(role);
    if (!t) {
      t = this.k.tensor(shape, role);
      this.pool.set(role, t);
    }
    if (t.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`scratch ${role}: [${t.shape}] requested as [${shape}]`);
    }
    return t;
  }

  /** A [B·T, X] token tensor viewed as [B, T, X] (ops that need the token structure). */
  tokens(t: Tensor): Tensor {
    const BT = this.B * this.T;
    return { ...t, shape: [this.B, this.T, t.length / BT] };
  }
}

/** y = x·Wᵀ + b with W, b = p(`${name}.weight`), p(`${name}.bias`) (nn.Linear). */
export function linear(
  ctx: GraphContext,
  p: Views,
  name: string,
  x: Tensor,
  y: Tensor,
): Dispatch[] {
  return linearForward(ctx.k, x, p(`${name}.weight`), p(`${name}.bias`), y);
}

/**
 * Backward of `linear`: writes dW and db into the gradient views `g`, and dx when given (added
 * into it with `accumulateDx`).
 */
export function linearBackward(
  ctx: GraphContext,
  p: Views,
  g: Views,
  name: string,
  x: Tensor,
  dy: Tensor,
  dx?: Tensor,
  accumulateDx = false,
): Dispatch[] {
  const ds = linearBackwardWeight(ctx.k, dy, x, g(`${name}.weight`), g(`${name}.bias`));
  if (!dx) return ds;
  const opts = accumulateDx ? { accumulate: true } : {};
  return [...ds, ...linearBackwardInput(ctx.k, dy, p(`${name}.weight`), dx, opts)];
}
