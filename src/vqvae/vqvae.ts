/**
 * The VQ-VAE on the GPU for one batch size: encoder → quantizer → decoder, recorded once.
 * `x` is an NCHW image batch in [-1, 1]; `recon` its NCHW reconstruction; the latent is NHWC
 * [B, H/4, W/4, D] (`ze` before and `zq` after quantization) inside, and NCHW `z` [B, D, h, w]
 * at the edge: what `encodeLatent` writes and `decodeLatent` reads (latent flow matching).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import type { FlatBuffer } from "../gpu/arena.ts";
import { toNchw, toNhwc } from "../ops/conv.ts";
import type { VQVAEConfig } from "./config.ts";
import { Ctx } from "./layers.ts";
import { Encoder } from "./encoder.ts";
import { Quantizer } from "./quantizer.ts";
import { Decoder } from "./decoder.ts";

export class VQVAEGraph {
  readonly x: Tensor;
  readonly recon: Tensor;
  /** The latent, NCHW [B, D, H/4, W/4]. */
  readonly z: Tensor;
  readonly encoder: Encoder;
  readonly quantizer: Quantizer;
  readonly decoder: Decoder;
  private ctx: Ctx;

  constructor(
    readonly k: Kernels,
    readonly cfg: VQVAEConfig,
    readonly params: FlatBuffer,
    readonly state: FlatBuffer,
    readonly B: number,
  ) {
    const { in_channels: C, image_size: H } = cfg;
    this.ctx = new Ctx(k, params, B);
    this.x = k.tensor([B, C, H, H], "x");
    this.encoder = new Encoder(this.ctx, cfg, this.x);
    this.quantizer = new Quantizer(this.ctx, cfg, state, this.encoder.ze);
    this.decoder = new Decoder(this.ctx, cfg, this.quantizer.zq);
    this.recon = k.tensor([B, C, H, H], "recon");
    this.z = k.tensor([B, cfg.code_dim, H / 4, H / 4], "z");
  }

  /** Encode only: x → ze, codes and zq. */
  encode(): Dispatch[] {
    return [...this.encoder.forward(), ...this.quantizer.forward()];
  }

  /** x → z = the encoder's continuous output z_e (NCHW), unquantized. */
  encodeLatent(): Dispatch[] {
    return [...this.encoder.forward(), ...toNchw(this.k, this.encoder.ze, this.z)];
  }

  /** z → recon: snapped to the nearest codes first (`quantize`), or decoded as it is. */
  decodeLatent(quantize: boolean): Dispatch[] {
    const q = this.quantizer;
    return [
      ...toNhwc(this.k, this.z, quantize ? q.ze : q.zq),
      ...(quantize ? q.forward() : []),
      ...this.decoder.forward(),
      ...toNchw(this.k, this.decoder.out, this.recon),
    ];
  }

  /** The forward pass: x → recon. */
  forward(): Dispatch[] {
    return [
      ...this.encode(),
      ...this.decoder.forward(),
      ...toNchw(this.k, this.decoder.out, this.recon),
    ];
  }

  /**
   * The backward pass given dRecon [B, C, H, W] (the reconstruction loss's gradient): every
   * trainable weight's gradient into `grads` (paramLayout), the commitment term included.
   */
  backward(dRecon: Tensor, grads: FlatBuffer): Dispatch[] {
    const ctx = this.ctx;
    ctx.grads = grads;
    const dout = ctx.d(this.decoder.out), dzq = ctx.d(this.quantizer.zq);
    const dze = ctx.d(this.encoder.ze);
    return [
      ...toNhwc(this.k, dRecon, dout),
      ...this.decoder.backward(dout, dzq),
      ...this.quantizer.backward(dzq, dze),
      ...this.encoder.backward(dze),
    ];
  }

  /** The codebook's EMA update (after the forward), see Quantizer.update. */
  update(rand: Tensor, metrics: Tensor): Dispatch[] {
    return this.quantizer.update(rand, metrics);
  }
}
