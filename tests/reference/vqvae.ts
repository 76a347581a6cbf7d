/**
 * Float64 reference of the VQ-VAE (src/vqvae: encoder, quantizer, decoder) built from the op
 * references: forward, the losses, and every trainable weight's gradient (straight-through
 * estimator plus the commitment term). Each layer returns its output and a closure mapping its
 * output gradient to its input gradient (adding the weight gradients into `grads`).
 */
import * as conv from "./conv.ts";
import * as gn from "./groupnorm.ts";
import * as ops from "./ops.ts";
import * as q from "./quantize.ts";
import type { VQVAEConfig } from "../../src/vqvae/config.ts";
import { trainableSpecs } from "../../src/vqvae/params.ts";
import type { Rng } from "./random.ts";

export type F64 = Float64Array;
export type Weights = Map<string, F64>;

/** An NHWC activation with its shape, and the backward from its gradient to the input's. */
interface Node {
  y: F64;
  shape: [number, number, number, number]; // B, H, W, C
  back: (dy: F64) => F64;
}

const add = (a: F64, b: F64) => a.map((v, i) => v + b[i]);

class Net {
  grads: Weights = new Map();
  constructor(readonly w: Weights, readonly cfg: VQVAEConfig) {}

  private grad(name: string, g: F64): void {
    const cur = this.grads.get(name);
    this.grads.set(name, cur ? add(cur, g) : g);
  }

  conv(
    name: string,
    x: F64,
    [B, H, W, Cin]: number[],
    cout: number,
    k: number,
    s: number,
    pad: number,
    nchw = false,
  ): Node {
    const shape = { B, H, W, Cin, Cout: cout, k, s, pad, nchw };
    const wt = this.w.get(`${name}.weight`)!, b = this.w.get(`${name}.bias`)!;
    const y = conv.conv2d(x, wt, b, shape);
    return {
      y,
      shape: [B, conv.outSize(H, k, s, pad), conv.outSize(W, k, s, pad), cout],
      back: (dy) => {
        const g = conv.conv2dBackward(x, wt, dy, shape);
        this.grad(`${name}.weight`, g.dw);
        this.grad(`${name}.bias`, g.db);
        return g.dx;
      },
    };
  }

  norm(name: string, x: Node): Node {
    const [B, H, W, C] = x.shape;
    const s = { B, S: H * W, C, G: this.cfg.groups, eps: 1e-6 };
    const gamma = this.w.get(`${name}.weight`)!, beta = this.w.get(`${name}.bias`)!;
    return {
      y: gn.groupNorm(x.y, gamma, beta, s),
      shape: x.shape,
      back: (dy) => {
        const g = gn.groupNormBackward(x.y, gamma, dy, s);
        this.grad(`${name}.weight`, g.dgamma);
        this.grad(`${name}.bias`, g.dbeta);
        return g.dx;
      },
    };
  }

  act(x: Node): Node {
    const relu = this.cfg.act === "relu";
    return {
      y: relu ? ops.relu(x.y) : ops.silu(x.y),
      shape: x.shape,
      back: (dy) => relu ? ops.reluBackward(x.y, dy) : ops.siluBackward(x.y, dy),
    };
  }

  up(x: Node): Node {
    const [B, H, W, C] = x.shape;
    return {
      y: conv.upsample(x.y, B, H, W, C, 2),
      shape: [B, 2 * H, 2 * W, C],
      back: (dy) => conv.upsampleBackward(dy, B, H, W, C, 2),
    };
  }

  /** Layers applied in sequence, as one node. */
  chain(x: Node, ...fs: ((n: Node) => Node)[]): Node {
    const nodes: Node[] = [];
    let h = x;
    for (const f of fs) {
      h = f(h);
      nodes.push(h);
    }
    return {
      y: h.y,
      shape: h.shape,
      back: (dy) => nodes.toReversed().reduce((g, n) => n.back(g), dy),
    };
  }

  convNode(name: string, cout: number, k: number, s: number, pad: number) {
    return (x: Node) => this.conv(name, x.y, x.shape, cout, k, s, pad);
  }

  res(name: string) {
    return (x: Node): Node => {
      const C = x.shape[3];
      const branch = this.chain(
        x,
        (n) => this.norm(`${name}.norm1`, n),
        (n) => this.act(n),
        this.convNode(`${name}.conv1`, C, 3, 1, 1),
        (n) => this.norm(`${name}.norm2`, n),
        (n) => this.act(n),
        this.convNode(`${name}.conv2`, C, 3, 1, 1),
      );
      return { y: add(x.y, branch.y), shape: x.shape, back: (dy) => add(dy, branch.back(dy)) };
    };
  }
}

/** The encoder as one node: x [B, C, H, W] (NCHW) → ze [B, H/4, W/4, D]. */
function encoder(net: Net, x: F64, B: number): Node {
  const { in_channels: C, image_size: H, channels: ch, code_dim: D } = net.cfg;
  const input: Node = { y: x, shape: [B, H, H, C], back: () => new Float64Array(0) };
  return net.chain(
    input,
    (n) => net.conv("encoder.down.0", n.y, [B, H, H, C], ch / 2, 4, 2, 1, true),
    (n) => net.act(n),
    net.convNode("encoder.down.1", ch, 4, 2, 1),
    (n) => net.act(n),
    net.convNode("encoder.conv_mid", ch, 3, 1, 1),
    ...Array.from({ length: net.cfg.res_blocks }, (_, i) => net.res(`encoder.res.${i}`)),
    (n) => net.norm("encoder.norm_out", n),
    (n) => net.act(n),
    net.convNode("encoder.conv_out", D, 1, 1, 0),
  );
}

/** The decoder as one node: zq [B, h, w, D] → [B, H, W, C] (NHWC); back returns dzq. */
function decoder(net: Net, zq: F64, B: number): Node {
  const { in_channels: C, image_size: H, channels: ch, code_dim: D } = net.cfg;
  const latent: Node = { y: zq, shape: [B, H / 4, H / 4, D], back: (d) => d };
  return net.chain(
    latent,
    net.convNode("decoder.conv_in", ch, 3, 1, 1),
    ...Array.from({ length: net.cfg.res_blocks }, (_, i) => net.res(`decoder.res.${i}`)),
    (n) => net.norm("decoder.norm_out", n),
    (n) => net.act(n),
    (n) => net.up(n),
    net.convNode("decoder.up.0.conv", ch / 2, 3, 1, 1),
    (n) => net.act(n),
    (n) => net.up(n),
    net.convNode("decoder.up.1.conv", C, 3, 1, 1),
  );
}

export interface Result {
  ze: F64;
  idx: Int32Array;
  zq: F64;
  /** NCHW reconstruction. */
  recon: F64;
  reconLoss: number;
  /** mean((ze − zq)²) (the loss adds β times it). */
  commitLoss: number;
  /** Gradients of reconLoss + β·commitLoss (straight-through). */
  grads: Weights;
}

/**
 * The forward and backward of one batch x [B, C, H, W] (NCHW, in [-1, 1]) with codebook E.
 * `codes`, if given, replaces the nearest-code search (to follow the GPU through float32 ties).
 */
export function vqvaeStep(
  cfg: VQVAEConfig,
  w: Weights,
  E: F64,
  x: F64,
  B: number,
  codes?: ArrayLike<number>,
): Result {
  const net = new Net(w, cfg);
  const { in_channels: C, image_size: H, code_dim: D } = cfg;
  const enc = encoder(net, x, B);
  const N = enc.y.length / D;
  const idx = codes ? Int32Array.from(codes) : q.nearest(enc.y, E, N, D, cfg.codebook_size);
  const zq = q.gather(E, idx, D);
  const dec = decoder(net, zq, B);
  const recon = conv.toNchw(dec.y, B, H, H, C);
  let se = 0;
  for (let i = 0; i < x.length; i++) se += (recon[i] - x[i]) ** 2;
  const reconLoss = se / x.length;
  const commitLoss = q.commitmentLoss(enc.y, zq, 1);
  const dRecon = recon.map((v, i) => 2 * (v - x[i]) / x.length);
  const dzq = dec.back(conv.toNhwc(dRecon, B, C, H, H));
  enc.back(q.straightThroughBackward(enc.y, zq, dzq, cfg.beta));
  return { ze: enc.y, idx, zq, recon, reconLoss, commitLoss, grads: net.grads };
}

/** The encoder alone, and the weight gradients of Σ dze·ze. */
export function encoderGrads(cfg: VQVAEConfig, w: Weights, x: F64, B: number, dze: F64) {
  const net = new Net(w, cfg);
  const enc = encoder(net, x, B);
  enc.back(dze);
  return { y: enc.y, grads: net.grads };
}

/** The decoder alone (NHWC output), and the gradients of Σ dout·out (weights and dzq). */
export function decoderGrads(cfg: VQVAEConfig, w: Weights, zq: F64, B: number, dout: F64) {
  const net = new Net(w, cfg);
  const dec = decoder(net, zq, B);
  const dzq = dec.back(dout);
  return { y: dec.y, grads: net.grads, dzq };
}

/** Random weights with non-trivial biases and norm affines (float32-representable). */
export function randomWeights(cfg: VQVAEConfig, rng: Rng): Weights {
  const w: Weights = new Map();
  for (const s of trainableSpecs(cfg)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (/\.norm[^.]*\.weight$/.test(s.name)) {
      w.set(s.name, rng.normals(n, 0.2).map((v) => Math.fround(1 + v)));
    } else if (s.name.endsWith(".bias") || /\.norm/.test(s.name)) {
      w.set(s.name, rng.normals(n, 0.1));
    } else {
      w.set(s.name, rng.normals(n, 1 / Math.sqrt(s.shape[1] * s.shape[2] * s.shape[3])));
    }
  }
  return w;
}
