/**
 * The vector quantizer: z_q = the nearest code of each z_e row, the straight-through gradient
 * with the commitment loss β·mean((z_e − sg(z_q))²), and the EMA codebook update with dead-code
 * restarts (no gradient reaches the codebook). Its state is a flat buffer of stateLayout.
 */
import type { Dispatch, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import {
  vqEmaUpdate,
  vqNearest,
  type VqState,
  vqStraightThroughBackward,
} from "../ops/quantize.ts";
import type { VQVAEConfig } from "./config.ts";
import type { Ctx } from "./layers.ts";

export class Quantizer {
  /** z_q [B, h, w, D]. */
  readonly zq: Tensor;
  /** The code of each latent cell [B·h·w] (u32). */
  readonly idx: Tensor;
  readonly vq: VqState;
  private norms: Tensor;
  private dots: Tensor;

  constructor(
    private ctx: Ctx,
    private cfg: VQVAEConfig,
    state: FlatBuffer,
    readonly ze: Tensor,
  ) {
    const N = ze.length / cfg.code_dim;
    this.zq = ctx.tensor(ze.shape, "zq");
    this.idx = ctx.tensor([N], "codes");
    this.norms = ctx.tensor([cfg.codebook_size], "code norms");
    this.dots = ctx.tensor([N, cfg.codebook_size], "z·codebook");
    this.vq = {
      codebook: state.view("quantizer.embedding.weight"),
      clusterSize: state.view("quantizer.cluster_size"),
      embedAvg: state.view("quantizer.embed_avg"),
      unused: state.view("quantizer.unused"),
    };
  }

  /** Rows (latent cells) per batch: B·h·w. */
  get rows(): number {
    return this.idx.length;
  }

  forward(): Dispatch[] {
    const { ctx, cfg } = this;
    const flat = { ...this.ze, shape: [this.rows, cfg.code_dim] };
    return vqNearest(ctx.k, flat, this.vq.codebook, this.norms, this.dots, this.idx, this.zq);
  }

  /** dze = dzq + the commitment gradient (straight-through). */
  backward(dzq: Tensor, dze: Tensor): Dispatch[] {
    const { ctx, cfg } = this;
    return vqStraightThroughBackward(ctx.k, this.ze, this.zq, dzq, dze, cfg.beta, cfg.code_dim);
  }

  /**
   * The EMA update from this step's z_e and codes; `rand` [K] (u32 rows in [0, B·h·w)) are the
   * restart rows, `metrics` [2] receives (perplexity, codes used).
   */
  update(rand: Tensor, metrics: Tensor): Dispatch[] {
    const { ctx, cfg } = this;
    const flat = { ...this.ze, shape: [this.rows, cfg.code_dim] };
    return vqEmaUpdate(ctx.k, flat, this.idx, this.vq, rand, metrics, {
      decay: cfg.ema_decay,
      deadAfter: cfg.dead_after,
    });
  }
}
