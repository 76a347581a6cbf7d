/**
 * What the DiT components share: the graph context (kernels, config, batch geometry, parameter
 * buffers, precision, scratch pool, training or inference-only), named views of a component's
 * parameters and gradients, and the Linear layer every component records. Each component
 * (embedders.ts, block.ts, final_layer.ts) owns its activations and records its own forward and
 * backward, as DiT's modules do.
 *
 * Mixed precision ("f16"): the master weights stay f32 (`params`); `params16` is their f16 copy.
 * A GEMM whose activation operand is f16 reads its weight from the copy (`linear` picks by the
 * operand's dtype) and its bias from the f32 master. Which activations are f16 is the component's
 * choice (`ctx.act`: the blocks' token path).
 */
import type { Dispatch, DType, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "./config.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
} from "../ops/linear.ts";

/** Storage and compute precision of a model's weights and activations. */
export type Precision = "f32" | "f16";

/**
 * Parameter (or gradient) views of one component: `p("mlp.fc1.weight")` under its prefix;
 * `p.half` views the f16 weight copy (mixed precision only).
 */
export type Views = ((name: string) => Tensor) & { half?: (name: string) => Tensor };

/** The views of `buf` (params or grads of paramLayout(cfg)) under a DiT prefix. */
export function views(buf: FlatBuffer, prefix: string, half?: FlatBuffer): Views {
  const v: Views = (name) => buf.view(prefix + name);
  if (half) v.half = (name) => half.view(prefix + name);
  return v;
}

/**
 * Where a backward puts the parameter gradients: a flat buffer of paramLayout(cfg), written, or
 * added into with `accumulate` (gradient accumulation over micro-batches).
 */
export interface Grads {
  buffer: FlatBuffer;
  accumulate: boolean;
}

/** Gradient views under a DiT prefix; `accumulate` says whether writers add into them. */
export type GradViews = Views & { accumulate: boolean };

/** The gradient views of `grads` under a DiT prefix. */
export function gradViews(grads: Grads, prefix: string): GradViews {
  return Object.assign(views(grads.buffer, prefix), { accumulate: grads.accumulate });
}

export interface GraphOptions {
  /** "f16": the blocks' token activations in f16, GEMMs on the f16 weight copy (default: defaultPrecision). */
  precision?: Precision;
  /** The f16 copy of `params` (required for f16). */
  params16?: FlatBuffer;
  /**
   * Inference only: no activation is kept for a backward; the blocks share one set of
   * activations and update one residual stream in place (memory ≈ one block's).
   */
  inference?: boolean;
  /**
   * Training with activation checkpointing: the blocks share one set of activations and keep
   * only their outputs (each the next block's input); the backward recomputes a block's forward
   * before its backward, with the same kernels (the same gradients, bit for bit).
   */
  recompute?: boolean;
}

/** One batch size's recording context. */
export class GraphContext {
  /** Tokens per image. */
  readonly T: number;
  readonly precision: Precision;
  readonly inference: boolean;
  readonly recompute: boolean;
  readonly params16?: FlatBuffer;
  private pool = new Map<string, Tensor>();
  private shared = new Map<string, Tensor>();

  constructor(
    readonly k: Kernels,
    readonly cfg: DiTConfig,
    /** Parameters (training or EMA weights), paramLayout(cfg), f32. */
    readonly params: FlatBuffer,
    readonly B: number,
    T: number,
    opts: GraphOptions = {},
  ) {
    this.T = T;
    this.precision = opts.precision ?? "f32";
    this.inference = opts.inference ?? false;
    this.recompute = opts.recompute ?? false;
    if (this.inference && this.recompute) {
      throw new Error("graph: an inference-only graph has no backward to recompute for");
    }
    if (this.precision === "f16" && !opts.params16) {
      throw new Error("graph: f16 precision needs the f16 weight copy (params16)");
    }
    this.params16 = this.precision === "f16" ? opts.params16 : undefined;
  }

  /** Element type of the activations that feed the blocks' GEMMs (undefined: f32). */
  get act(): DType | undefined {
    return this.precision === "f16" ? "f16" : undefined;
  }

  /** Views of the parameters under `prefix` (with the f16 copy under `.half` in f16). */
  views(prefix: string): Views {
    return views(this.params, prefix, this.params16);
  }

  /** A new activation tensor (kept for the backward). */
  tensor(shape: number[], label: string, dtype?: DType): Tensor {
    return this.k.tensor(shape, label, dtype);
  }

  /**
   * An activation of a repeated component (a block): its own tensor when training (`label`), one
   * tensor shared by every block asking for `role` in an inference-only or recomputing graph.
   */
  activation(role: string, shape: number[], label: string, dtype?: DType): Tensor {
    if (!this.inference && !this.recompute) return this.tensor(shape, label, dtype);
    const key = `${role}:${dtype ?? "f32"}`;
    let t = this.shared.get(key);
    if (!t) {
      t = this.k.tensor(shape, role, dtype);
      this.shared.set(key, t);
    }
    if (t.length !== shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`activation ${role}: [${t.shape}] requested as [${shape}]`);
    }
    return t;
  }

  /**
   * A backward scratch tensor shared by every component that asks for `role` (components run
   * one after another, so e.g. every block reuses one "d.mlp" buffer). Allocated on first use.
   */
  scratch(role: string, shape: number[], dtype?: DType): Tensor {
    if (this.inference) throw new Error(`${role}: an inference-only graph has no backward`);
    const key = `${role}:${dtype ?? "f32"}`;
    let t = this.pool.get(key);
    if (!t) {
      t = this.k.tensor(shape, role, dtype);
      this.pool.set(key, t);
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

/** The weight a GEMM with an operand of `x`'s dtype reads: the f16 copy for f16 operands. */
function weightFor(p: Views, name: string, x: Tensor): Tensor {
  if (x.dtype !== "f16") return p(name);
  if (!p.half) throw new Error(`${name}: an f16 operand needs the f16 weight copy`);
  return p.half(name);
}

/** Label dispatches with the layer's name (the bench's per-kernel breakdown groups by label). */
export function named(name: string, ds: Dispatch[]): Dispatch[] {
  return ds.map((d) => ({ ...d, label: `${name} ${d.label}` }));
}

/**
 * y = x·Wᵀ + b with W, b = p(`${name}.weight`), p(`${name}.bias`) (nn.Linear), with linear's
 * fused epilogues in `opts` (gelu, gate, residual, pre, accumulate). W is the f16 copy when x is
 * f16; b is always the f32 master.
 */
export function linear(
  ctx: GraphContext,
  p: Views,
  name: string,
  x: Tensor,
  y: Tensor,
  opts: LinearOptions = {},
): Dispatch[] {
  const w = weightFor(p, `${name}.weight`, x);
  return named(name, linearForward(ctx.k, x, w, p(`${name}.bias`), y, opts));
}

/**
 * Backward of `linear`: writes (or, with `g.accumulate`, adds) dW and db into the gradient views
 * `g` (f32), and dx when given (added into it with `accumulateDx`; `geluGrad: h` multiplies it by
 * gelu'(h), the backward of a gelu epilogue on the layer below).
 */
export function linearBackward(
  ctx: GraphContext,
  p: Views,
  g: GradViews,
  name: string,
  x: Tensor,
  dy: Tensor,
  dx?: Tensor,
  accumulateDx = false,
  dxOpts: LinearOptions = {},
): Dispatch[] {
  const ds = linearBackwardWeight(ctx.k, dy, x, g(`${name}.weight`), g(`${name}.bias`), {
    accumulate: g.accumulate,
  });
  if (!dx) return named(name, ds);
  const opts = accumulateDx ? { ...dxOpts, accumulate: true } : dxOpts;
  const w = weightFor(p, `${name}.weight`, dy);
  return named(name, [...ds, ...linearBackwardInput(ctx.k, dy, w, dx, opts)]);
}
