/**
 * DiT2D on the GPU: the forward and backward of facebookresearch/DiT (learn_sigma=False) as
 * recorded dispatches. One unit per component, named as DiT names them (x_embedder, t_embedder,
 * y_embedder, blocks.N, final_layer). Activations are allocated once per batch size and reused;
 * parameters and gradients are views into flat buffers of one layout.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import type { DiTConfig } from "./config.ts";
import { numTokens } from "./config.ts";
import { linearBackwardInput, linearBackwardWeight, linearForward } from "../ops/linear.ts";
import { geluBackward, geluForward, siluBackward, siluForward } from "../ops/elementwise.ts";
import { layerNormModulateBackward, layerNormModulateForward } from "../ops/norm.ts";
import { gateResidualBackward, gateResidualForward } from "../ops/residual.ts";
import { attentionAuxShape, attentionBackward, attentionForward } from "../ops/attention.ts";
import {
  addPosEmbedForward,
  im2colForward,
  unpatchifyBackward,
  unpatchifyForward,
} from "../ops/patch.ts";
import {
  addForward,
  labelEmbedBackward,
  labelEmbedForward,
  timestepEmbeddingForward,
} from "../ops/embed.ts";

/** Frequency embedding width of the timestep embedder (DiT: 256). */
export const FREQ_DIM = 256;

interface BlockActs {
  mod: Tensor;
  n1: Tensor;
  stats1: Tensor;
  qkv: Tensor;
  aux: Tensor;
  a: Tensor;
  o: Tensor;
  h1: Tensor;
  n2: Tensor;
  stats2: Tensor;
  f1: Tensor;
  g: Tensor;
  f2: Tensor;
  h2: Tensor;
}

/** Scratch gradients shared by all blocks (backward only). */
interface Scratch {
  dres: Tensor; // residual-stream gradient [BT, D], accumulated in place
  dmod: Tensor; // [B, 6D]
  dfmod: Tensor; // [B, 2D]
  dD: Tensor; // [BT, D]  (df2, do)
  dD2: Tensor; // [BT, D]  (dn1, dn2, da)
  d4a: Tensor; // [BT, 4D] (dg)
  d4b: Tensor; // [BT, 4D] (df1)
  dqkv: Tensor; // [BT, 3D]
  dsc: Tensor; // [B, D]
  dc: Tensor; // [B, D]
  dt2: Tensor; // [B, D]
  dt1: Tensor; // [B, D]
  dfo: Tensor; // [BT, P]
}

/**
 * The activations and recorded dispatches of DiT2D for one batch size. `x`, `t`, `y` are the
 * inputs (write them before submitting); `out` is the velocity [B, C, H, W].
 */
export class DiTGraph {
  readonly x: Tensor;
  readonly t: Tensor;
  readonly y: Tensor;
  readonly out: Tensor;
  readonly B: number;
  readonly T: number;
  private cols: Tensor;
  private h0: Tensor;
  private tf: Tensor;
  private t1: Tensor;
  private t2: Tensor;
  private temb: Tensor;
  private yemb: Tensor;
  private c: Tensor;
  private sc: Tensor;
  private blocks: BlockActs[] = [];
  private fmod: Tensor;
  private nf: Tensor;
  private fstats: Tensor;
  private fo: Tensor;
  private s?: Scratch;

  constructor(
    readonly k: Kernels,
    readonly cfg: DiTConfig,
    /** Parameters (training weights or EMA weights). */
    readonly params: FlatBuffer,
    batch: number,
  ) {
    const { in_channels: C, image_size: H, patch_size: p, hidden_size: D } = cfg;
    const B = this.B = batch;
    const T = this.T = numTokens(cfg);
    const BT = B * T, P = C * p * p;
    const a = (shape: number[], label: string) => k.tensor(shape, label);
    this.x = a([B, C, H, H], "x");
    this.t = a([B], "t");
    this.y = a([B], "y");
    this.cols = a([BT, P], "cols");
    this.h0 = a([BT, D], "h0");
    this.tf = a([B, FREQ_DIM], "t_freq");
    this.t1 = a([B, D], "t1");
    this.t2 = a([B, D], "t2");
    this.temb = a([B, D], "t_emb");
    this.yemb = a([B, D], "y_emb");
    this.c = a([B, D], "c");
    this.sc = a([B, D], "silu_c");
    for (let i = 0; i < cfg.depth; i++) {
      this.blocks.push({
        mod: a([B, 6 * D], `b${i}.mod`),
        n1: a([BT, D], `b${i}.n1`),
        stats1: a([BT * 2], `b${i}.stats1`),
        qkv: a([BT, 3 * D], `b${i}.qkv`),
        aux: a(attentionAuxShape(B, T, D, cfg.num_heads), `b${i}.attn_aux`),
        a: a([BT, D], `b${i}.attn`),
        o: a([BT, D], `b${i}.proj`),
        h1: a([BT, D], `b${i}.h1`),
        n2: a([BT, D], `b${i}.n2`),
        stats2: a([BT * 2], `b${i}.stats2`),
        f1: a([BT, 4 * D], `b${i}.fc1`),
        g: a([BT, 4 * D], `b${i}.gelu`),
        f2: a([BT, D], `b${i}.fc2`),
        h2: a([BT, D], `b${i}.h2`),
      });
    }
    this.fmod = a([B, 2 * D], "final.mod");
    this.nf = a([BT, D], "final.norm");
    this.fstats = a([BT * 2], "final.stats");
    this.fo = a([BT, P], "final.linear");
    this.out = a([B, C, H, H], "out");
  }

  private w(name: string): Tensor {
    return this.params.view(name);
  }

  /** Hidden state entering block i (or the final layer when i = depth). */
  private hidden(i: number): Tensor {
    return i === 0 ? this.h0 : this.blocks[i - 1].h2;
  }

  /** The forward pass, recorded once: reads x, t, y; writes out. */
  forward(): Dispatch[] {
    const { k, cfg } = this;
    const D = cfg.hidden_size, p = cfg.patch_size, C = cfg.in_channels;
    const ds: Dispatch[] = [];
    // x_embedder: stride-p convolution as im2col + linear, then the fixed positional embedding.
    ds.push(...toArray(im2colForward(k, this.x, this.cols, p)));
    const pe = this.w("x_embedder.proj.weight");
    const peView: Tensor = { ...pe, shape: [D, C * p * p] };
    ds.push(...linearForward(k, this.cols, peView, this.w("x_embedder.proj.bias"), this.h0));
    // The fixed 2D sin-cos positional embedding: the pos_embed slot of the parameters, as [T, D].
    const pos: Tensor = { ...this.w("pos_embed"), shape: [this.T, D] };
    ds.push(...toArray(addPosEmbedForward(k, this.h0, pos)));
    // t_embedder: frequency embedding of t_scale·t, Linear, SiLU, Linear.
    ds.push(...toArray(timestepEmbeddingForward(k, this.t, this.tf, cfg.t_scale)));
    ds.push(
      ...linearForward(
        k,
        this.tf,
        this.w("t_embedder.mlp.0.weight"),
        this.w("t_embedder.mlp.0.bias"),
        this.t1,
      ),
    );
    ds.push(siluForward(k, this.t1, this.t2));
    ds.push(
      ...linearForward(
        k,
        this.t2,
        this.w("t_embedder.mlp.2.weight"),
        this.w("t_embedder.mlp.2.bias"),
        this.temb,
      ),
    );
    // y_embedder (absent for unconditional models): c = t_emb + y_emb.
    let c = this.temb;
    if (cfg.num_classes > 0) {
      ds.push(
        ...toArray(
          labelEmbedForward(k, this.w("y_embedder.embedding_table.weight"), this.y, this.yemb),
        ),
      );
      ds.push(...toArray(addForward(k, this.temb, this.yemb, this.c)));
      c = this.c;
    }
    ds.push(siluForward(k, c, this.sc));
    for (let i = 0; i < cfg.depth; i++) ds.push(...this.blockForward(i));
    ds.push(...this.finalForward());
    return ds;
  }

  private blockForward(i: number): Dispatch[] {
    const { k, cfg } = this;
    const b = this.blocks[i], h = this.hidden(i), n = `blocks.${i}.`;
    const r3 = (t: Tensor) => ({ ...t, shape: [this.B, this.T, t.length / (this.B * this.T)] });
    return [
      ...linearForward(
        k,
        this.sc,
        this.w(n + "adaLN_modulation.1.weight"),
        this.w(n + "adaLN_modulation.1.bias"),
        b.mod,
      ),
      ...toArray(layerNormModulateForward(k, r3(h), b.mod, 0, 1, r3(b.n1), b.stats1)),
      ...linearForward(k, b.n1, this.w(n + "attn.qkv.weight"), this.w(n + "attn.qkv.bias"), b.qkv),
      ...toArray(attentionForward(k, r3(b.qkv), r3(b.a), b.aux, cfg.num_heads)),
      ...linearForward(k, b.a, this.w(n + "attn.proj.weight"), this.w(n + "attn.proj.bias"), b.o),
      ...toArray(gateResidualForward(k, r3(h), r3(b.o), b.mod, 2, r3(b.h1))),
      ...toArray(layerNormModulateForward(k, r3(b.h1), b.mod, 3, 4, r3(b.n2), b.stats2)),
      ...linearForward(k, b.n2, this.w(n + "mlp.fc1.weight"), this.w(n + "mlp.fc1.bias"), b.f1),
      geluForward(k, b.f1, b.g),
      ...linearForward(k, b.g, this.w(n + "mlp.fc2.weight"), this.w(n + "mlp.fc2.bias"), b.f2),
      ...toArray(gateResidualForward(k, r3(b.h1), r3(b.f2), b.mod, 5, r3(b.h2))),
    ];
  }

  private finalForward(): Dispatch[] {
    const { k, cfg } = this;
    const h = this.hidden(cfg.depth);
    const r3 = (t: Tensor) => ({ ...t, shape: [this.B, this.T, t.length / (this.B * this.T)] });
    return [
      ...linearForward(
        k,
        this.sc,
        this.w("final_layer.adaLN_modulation.1.weight"),
        this.w("final_layer.adaLN_modulation.1.bias"),
        this.fmod,
      ),
      ...toArray(layerNormModulateForward(k, r3(h), this.fmod, 0, 1, r3(this.nf), this.fstats)),
      ...linearForward(
        k,
        this.nf,
        this.w("final_layer.linear.weight"),
        this.w("final_layer.linear.bias"),
        this.fo,
      ),
      ...toArray(unpatchifyForward(k, this.fo, this.out, cfg.patch_size, cfg.in_channels)),
    ];
  }

  private scratch(): Scratch {
    if (this.s) return this.s;
    const { B, T, k } = this;
    const D = this.cfg.hidden_size, BT = B * T;
    const P = this.cfg.in_channels * this.cfg.patch_size ** 2;
    const a = (shape: number[], label: string) => k.tensor(shape, label);
    this.s = {
      dres: a([BT, D], "d.res"),
      dmod: a([B, 6 * D], "d.mod"),
      dfmod: a([B, 2 * D], "d.final_mod"),
      dD: a([BT, D], "d.D"),
      dD2: a([BT, D], "d.D2"),
      d4a: a([BT, 4 * D], "d.4D.a"),
      d4b: a([BT, 4 * D], "d.4D.b"),
      dqkv: a([BT, 3 * D], "d.qkv"),
      dsc: a([B, D], "d.silu_c"),
      dc: a([B, D], "d.c"),
      dt2: a([B, D], "d.t2"),
      dt1: a([B, D], "d.t1"),
      dfo: a([BT, P], "d.final_linear"),
    };
    return this.s;
  }

  /**
   * The backward pass, recorded once: given dOut [B, C, H, W] (the loss gradient w.r.t. `out`),
   * writes every trainable parameter's gradient into `grads` (same layout as params). Uses the
   * activations of the last forward.
   */
  backward(dOut: Tensor, grads: FlatBuffer): Dispatch[] {
    const { k, cfg } = this;
    const s = this.scratch();
    const g = (name: string) => grads.view(name);
    const D = cfg.hidden_size, p = cfg.patch_size, C = cfg.in_channels;
    const r3 = (t: Tensor) => ({ ...t, shape: [this.B, this.T, t.length / (this.B * this.T)] });
    const ds: Dispatch[] = [];
    // final_layer
    const hL = this.hidden(cfg.depth);
    const img = [this.B, C, cfg.image_size, cfg.image_size];
    ds.push(...toArray(unpatchifyBackward(k, { ...dOut, shape: img }, s.dfo)));
    ds.push(
      ...linearBackwardWeight(
        k,
        s.dfo,
        this.nf,
        g("final_layer.linear.weight"),
        g("final_layer.linear.bias"),
      ),
    );
    ds.push(...linearBackwardInput(k, s.dfo, this.w("final_layer.linear.weight"), s.dD2));
    ds.push(
      ...toArray(
        layerNormModulateBackward(
          k,
          r3(hL),
          this.fmod,
          0,
          1,
          this.fstats,
          r3(s.dD2),
          r3(s.dres),
          s.dfmod,
        ),
      ),
    );
    ds.push(
      ...linearBackwardWeight(
        k,
        s.dfmod,
        this.sc,
        g("final_layer.adaLN_modulation.1.weight"),
        g("final_layer.adaLN_modulation.1.bias"),
      ),
    );
    ds.push(
      ...linearBackwardInput(k, s.dfmod, this.w("final_layer.adaLN_modulation.1.weight"), s.dsc),
    );
    // blocks, last to first; s.dres carries the residual-stream gradient.
    for (let i = cfg.depth - 1; i >= 0; i--) ds.push(...this.blockBackward(i, g, r3));
    // x_embedder (no input gradient needed: x is data).
    const peView: Tensor = { ...g("x_embedder.proj.weight"), shape: [D, C * p * p] };
    ds.push(...linearBackwardWeight(k, s.dres, this.cols, peView, g("x_embedder.proj.bias")));
    // c = t_emb + y_emb, sc = silu(c)
    const c = cfg.num_classes > 0 ? this.c : this.temb;
    ds.push(siluBackward(k, c, s.dsc, s.dc));
    if (cfg.num_classes > 0) {
      ds.push(
        ...toArray(labelEmbedBackward(k, this.y, s.dc, g("y_embedder.embedding_table.weight"))),
      );
    }
    ds.push(
      ...linearBackwardWeight(
        k,
        s.dc,
        this.t2,
        g("t_embedder.mlp.2.weight"),
        g("t_embedder.mlp.2.bias"),
      ),
    );
    ds.push(...linearBackwardInput(k, s.dc, this.w("t_embedder.mlp.2.weight"), s.dt2));
    ds.push(siluBackward(k, this.t1, s.dt2, s.dt1));
    ds.push(
      ...linearBackwardWeight(
        k,
        s.dt1,
        this.tf,
        g("t_embedder.mlp.0.weight"),
        g("t_embedder.mlp.0.bias"),
      ),
    );
    return ds;
  }

  private blockBackward(
    i: number,
    g: (n: string) => Tensor,
    r3: (t: Tensor) => Tensor,
  ): Dispatch[] {
    const { k, cfg } = this;
    const s = this.scratch(), b = this.blocks[i], h = this.hidden(i), n = `blocks.${i}.`;
    return [
      // h2 = h1 + gate_mlp·fc2(gelu(fc1(n2)))
      ...toArray(gateResidualBackward(k, r3(b.f2), b.mod, 5, r3(s.dres), r3(s.dD), s.dmod)),
      ...linearBackwardWeight(k, s.dD, b.g, g(n + "mlp.fc2.weight"), g(n + "mlp.fc2.bias")),
      ...linearBackwardInput(k, s.dD, this.w(n + "mlp.fc2.weight"), s.d4a),
      geluBackward(k, b.f1, s.d4a, s.d4b),
      ...linearBackwardWeight(k, s.d4b, b.n2, g(n + "mlp.fc1.weight"), g(n + "mlp.fc1.bias")),
      ...linearBackwardInput(k, s.d4b, this.w(n + "mlp.fc1.weight"), s.dD2),
      ...toArray(
        layerNormModulateBackward(
          k,
          r3(b.h1),
          b.mod,
          3,
          4,
          b.stats2,
          r3(s.dD2),
          r3(s.dres),
          s.dmod,
          { accumulate: true },
        ),
      ),
      // h1 = h + gate_msa·proj(attn(qkv(n1)))
      ...toArray(gateResidualBackward(k, r3(b.o), b.mod, 2, r3(s.dres), r3(s.dD), s.dmod)),
      ...linearBackwardWeight(k, s.dD, b.a, g(n + "attn.proj.weight"), g(n + "attn.proj.bias")),
      ...linearBackwardInput(k, s.dD, this.w(n + "attn.proj.weight"), s.dD2),
      ...toArray(
        attentionBackward(k, r3(b.qkv), r3(b.a), b.aux, r3(s.dD2), r3(s.dqkv), cfg.num_heads),
      ),
      ...linearBackwardWeight(k, s.dqkv, b.n1, g(n + "attn.qkv.weight"), g(n + "attn.qkv.bias")),
      ...linearBackwardInput(k, s.dqkv, this.w(n + "attn.qkv.weight"), s.dD2),
      ...toArray(
        layerNormModulateBackward(k, r3(h), b.mod, 0, 1, b.stats1, r3(s.dD2), r3(s.dres), s.dmod, {
          accumulate: true,
        }),
      ),
      // mod = adaLN(silu(c)); d(silu c) accumulates over blocks
      ...linearBackwardWeight(
        k,
        s.dmod,
        this.sc,
        g(n + "adaLN_modulation.1.weight"),
        g(n + "adaLN_modulation.1.bias"),
      ),
      ...linearBackwardInput(k, s.dmod, this.w(n + "adaLN_modulation.1.weight"), s.dsc, {
        accumulate: true,
      }),
    ];
  }
}

function toArray(d: Dispatch | Dispatch[]): Dispatch[] {
  return Array.isArray(d) ? d : [d];
}
