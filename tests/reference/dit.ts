/**
 * Float64 CPU reference of the whole DiT (facebookresearch/DiT models.py, learn_sigma=False, with
 * t_scale): forward with a cache, and backward to every trainable parameter. Plain loops, one
 * function per component as DiT names them (x_embedder, t_embedder, y_embedder, blocks.N,
 * final_layer). Self-contained apart from the parameter specs and the elementwise references.
 *
 * Layouts: x and out [B, C, H, W]; tokens row-major [B, T, D] with token = row·(H/p) + col;
 * linear weights [out, in] (PyTorch); the patch vector of the patch embed is ordered (c, kh, kw)
 * (the conv weight flattened), the final linear's output (kh, kw, c) (DiT's unpatchify).
 */
import type { DiTConfig } from "../../src/model/config.ts";
import { paramSpecs } from "../../src/model/params.ts";
import { gelu, geluBackward, silu, siluBackward } from "./ops.ts";

export type F64 = Float64Array;
export type Params = Map<string, F64>;

const FREQ = 256;
const LN_EPS = 1e-6;

// ---------------------------------------------------------------------------------------------
// building blocks
// ---------------------------------------------------------------------------------------------

function get(params: Params, name: string): F64 {
  const v = params.get(name);
  if (!v) throw new Error(`ditRef: parameter ${name} missing`);
  return v;
}

/** y[n, o] = b[o] + Σ_i x[n, i]·W[o, i]. */
export function linear(x: F64, W: F64, b: F64, N: number, I: number, O: number): F64 {
  const y = new Float64Array(N * O);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      let s = b[o];
      for (let i = 0; i < I; i++) s += x[n * I + i] * W[o * I + i];
      y[n * O + o] = s;
    }
  }
  return y;
}

/** Gradients of `linear` given dy: dx [N, I], dW [O, I], db [O]. */
export function linearBackward(
  x: F64,
  W: F64,
  dy: F64,
  N: number,
  I: number,
  O: number,
): { dx: F64; dW: F64; db: F64 } {
  const dx = new Float64Array(N * I), dW = new Float64Array(O * I), db = new Float64Array(O);
  for (let n = 0; n < N; n++) {
    for (let o = 0; o < O; o++) {
      const g = dy[n * O + o];
      db[o] += g;
      for (let i = 0; i < I; i++) {
        dx[n * I + i] += g * W[o * I + i];
        dW[o * I + i] += g * x[n * I + i];
      }
    }
  }
  return { dx, dW, db };
}

/** LayerNorm without affine (eps 1e-6) over rows of length D: normalised rows and 1/σ. */
export function layerNorm(x: F64, N: number, D: number): { xhat: F64; rstd: F64 } {
  const xhat = new Float64Array(N * D), rstd = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let mean = 0;
    for (let d = 0; d < D; d++) mean += x[n * D + d];
    mean /= D;
    let v = 0;
    for (let d = 0; d < D; d++) v += (x[n * D + d] - mean) ** 2;
    v /= D;
    const r = 1 / Math.sqrt(v + LN_EPS);
    rstd[n] = r;
    for (let d = 0; d < D; d++) xhat[n * D + d] = (x[n * D + d] - mean) * r;
  }
  return { xhat, rstd };
}

/** dx of LayerNorm given d(xhat): rstd·(dy − mean(dy) − xhat·mean(dy·xhat)). */
export function layerNormBackward(dxhat: F64, xhat: F64, rstd: F64, N: number, D: number): F64 {
  const dx = new Float64Array(N * D);
  for (let n = 0; n < N; n++) {
    let m1 = 0, m2 = 0;
    for (let d = 0; d < D; d++) {
      m1 += dxhat[n * D + d];
      m2 += dxhat[n * D + d] * xhat[n * D + d];
    }
    m1 /= D;
    m2 /= D;
    for (let d = 0; d < D; d++) {
      dx[n * D + d] = rstd[n] * (dxhat[n * D + d] - m1 - xhat[n * D + d] * m2);
    }
  }
  return dx;
}

/**
 * DiT's modulate: y[b, t, d] = xhat·(1 + mod[b, scaleChunk·D + d]) + mod[b, shiftChunk·D + d],
 * with `mod` [B, K·D] holding the adaLN chunks.
 */
function modulate(
  xhat: F64,
  mod: F64,
  K: number,
  shiftChunk: number,
  scaleChunk: number,
  B: number,
  T: number,
  D: number,
): F64 {
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const i = (b * T + t) * D + d;
        y[i] = xhat[i] * (1 + mod[b * K * D + scaleChunk * D + d]) +
          mod[b * K * D + shiftChunk * D + d];
      }
    }
  }
  return y;
}

/** Backward of modulate: returns d(xhat) and writes the shift/scale chunks of dmod. */
function modulateBackward(
  dy: F64,
  xhat: F64,
  mod: F64,
  dmod: F64,
  K: number,
  shiftChunk: number,
  scaleChunk: number,
  B: number,
  T: number,
  D: number,
): F64 {
  const dxhat = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) {
      const sc = b * K * D + scaleChunk * D + d, sh = b * K * D + shiftChunk * D + d;
      let dScale = 0, dShift = 0;
      for (let t = 0; t < T; t++) {
        const i = (b * T + t) * D + d;
        dxhat[i] = dy[i] * (1 + mod[sc]);
        dScale += dy[i] * xhat[i];
        dShift += dy[i];
      }
      dmod[sc] += dScale;
      dmod[sh] += dShift;
    }
  }
  return dxhat;
}

/** h + gate[b, d]·f; gate is chunk `gateChunk` of mod [B, K·D]. */
function gateResidual(
  h: F64,
  f: F64,
  mod: F64,
  K: number,
  gateChunk: number,
  B: number,
  T: number,
  D: number,
): F64 {
  const y = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        const i = (b * T + t) * D + d;
        y[i] = h[i] + mod[b * K * D + gateChunk * D + d] * f[i];
      }
    }
  }
  return y;
}

/** Backward of gateResidual: returns df, adds into dmod's gate chunk (dh = dy passes through). */
function gateResidualBackward(
  dy: F64,
  f: F64,
  mod: F64,
  dmod: F64,
  K: number,
  gateChunk: number,
  B: number,
  T: number,
  D: number,
): F64 {
  const df = new Float64Array(B * T * D);
  for (let b = 0; b < B; b++) {
    for (let d = 0; d < D; d++) {
      const g = b * K * D + gateChunk * D + d;
      let dg = 0;
      for (let t = 0; t < T; t++) {
        const i = (b * T + t) * D + d;
        df[i] = dy[i] * mod[g];
        dg += dy[i] * f[i];
      }
      dmod[g] += dg;
    }
  }
  return df;
}

/**
 * timm Attention core on qkv [B, T, 3D] (layout (3, heads, dh) along the last axis):
 * a[b, t, h·dh + j] = Σ_s softmax_s(q·k/√dh)·v. Returns a [B, T, D] and the probabilities
 * [B, heads, T, T].
 */
export function attention(
  qkv: F64,
  B: number,
  T: number,
  D: number,
  heads: number,
): { a: F64; probs: F64 } {
  const dh = D / heads, scale = 1 / Math.sqrt(dh);
  const a = new Float64Array(B * T * D), probs = new Float64Array(B * heads * T * T);
  const row = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const qo = (b * T + i) * 3 * D + h * dh;
        let mx = -Infinity;
        for (let s = 0; s < T; s++) {
          const ko = (b * T + s) * 3 * D + D + h * dh;
          let dot = 0;
          for (let j = 0; j < dh; j++) dot += qkv[qo + j] * scale * qkv[ko + j];
          row[s] = dot;
          mx = Math.max(mx, dot);
        }
        let z = 0;
        for (let s = 0; s < T; s++) z += row[s] = Math.exp(row[s] - mx);
        const po = ((b * heads + h) * T + i) * T;
        for (let s = 0; s < T; s++) probs[po + s] = row[s] / z;
        for (let j = 0; j < dh; j++) {
          let acc = 0;
          for (let s = 0; s < T; s++) {
            acc += probs[po + s] * qkv[(b * T + s) * 3 * D + 2 * D + h * dh + j];
          }
          a[(b * T + i) * D + h * dh + j] = acc;
        }
      }
    }
  }
  return { a, probs };
}

/** Backward of `attention`: d(qkv) [B, T, 3D] given da [B, T, D]. */
export function attentionBackward(
  qkv: F64,
  probs: F64,
  da: F64,
  B: number,
  T: number,
  D: number,
  heads: number,
): F64 {
  const dh = D / heads, scale = 1 / Math.sqrt(dh);
  const dqkv = new Float64Array(B * T * 3 * D);
  const dp = new Float64Array(T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < heads; h++) {
      for (let i = 0; i < T; i++) {
        const po = ((b * heads + h) * T + i) * T;
        const dao = (b * T + i) * D + h * dh;
        // dP[i, s] = da[i]·v[s]; dS = P·(dP − Σ P·dP)
        let sum = 0;
        for (let s = 0; s < T; s++) {
          const vo = (b * T + s) * 3 * D + 2 * D + h * dh;
          let dot = 0;
          for (let j = 0; j < dh; j++) {
            dot += da[dao + j] * qkv[vo + j];
            dqkv[vo + j] += probs[po + s] * da[dao + j]; // dv
          }
          dp[s] = dot;
          sum += dot * probs[po + s];
        }
        const qo = (b * T + i) * 3 * D + h * dh;
        for (let s = 0; s < T; s++) {
          const ds = probs[po + s] * (dp[s] - sum) * scale;
          const ko = (b * T + s) * 3 * D + D + h * dh;
          for (let j = 0; j < dh; j++) {
            dqkv[qo + j] += ds * qkv[ko + j];
            dqkv[ko + j] += ds * qkv[qo + j];
          }
        }
      }
    }
  }
  return dqkv;
}

function addInto(dst: F64, src: F64): void {
  for (let i = 0; i < dst.length; i++) dst[i] += src[i];
}

function accumulate(grads: Params, name: string, g: F64): void {
  const cur = grads.get(name);
  if (cur) addInto(cur, g);
  else grads.set(name, Float64Array.from(g));
}

// ---------------------------------------------------------------------------------------------
// components, named as DiT names them
// ---------------------------------------------------------------------------------------------

interface Dims {
  B: number;
  C: number;
  H: number;
  p: number;
  g: number; // grid side H/p
  T: number;
  D: number;
  P: number; // C·p·p
  M: number; // MLP hidden
  heads: number;
}

function dims(cfg: DiTConfig, B: number): Dims {
  const p = cfg.patch_size, g = cfg.image_size / p, C = cfg.in_channels, D = cfg.hidden_size;
  return {
    B,
    C,
    H: cfg.image_size,
    p,
    g,
    T: g * g,
    D,
    P: C * p * p,
    M: Math.trunc(D * cfg.mlp_ratio),
    heads: cfg.num_heads,
  };
}

/** im2col of x [B, C, H, W] into patches [B·T, C·p·p], column order (c, kh, kw). */
function patchify(x: F64, s: Dims): F64 {
  const { B, C, H, p, g, T, P } = s;
  const out = new Float64Array(B * T * P);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < g; r++) {
      for (let q = 0; q < g; q++) {
        for (let c = 0; c < C; c++) {
          for (let kh = 0; kh < p; kh++) {
            for (let kw = 0; kw < p; kw++) {
              out[(b * T + r * g + q) * P + (c * p + kh) * p + kw] =
                x[((b * C + c) * H + r * p + kh) * H + q * p + kw];
            }
          }
        }
      }
    }
  }
  return out;
}

/** x_embedder (Conv2d k=s=p as a linear on patches) + pos_embed: h0 [B·T, D]. */
export function xEmbedder(
  s: Dims,
  params: Params,
  x: F64,
): { patches: F64; h: F64 } {
  const patches = patchify(x, s);
  const h = linear(
    patches,
    get(params, "x_embedder.proj.weight"),
    get(params, "x_embedder.proj.bias"),
    s.B * s.T,
    s.P,
    s.D,
  );
  const pos = get(params, "pos_embed");
  for (let b = 0; b < s.B; b++) {
    for (let i = 0; i < s.T * s.D; i++) h[b * s.T * s.D + i] += pos[i];
  }
  return { patches, h };
}

/** DiT's timestep_embedding(t_scale·t, 256): [cos(args), sin(args)], freqs exp(−ln(1e4)·i/128). */
export function timestepEmbedding(t: F64, tScale: number, dim = FREQ): F64 {
  const half = dim / 2, B = t.length;
  const out = new Float64Array(B * dim);
  for (let b = 0; b < B; b++) {
    const ts = tScale * t[b];
    for (let i = 0; i < half; i++) {
      const f = Math.exp((-Math.log(10000) * i) / half);
      out[b * dim + i] = Math.cos(ts * f);
      out[b * dim + half + i] = Math.sin(ts * f);
    }
  }
  return out;
}

interface TCache {
  tf: F64;
  t1: F64;
  t2: F64;
}

/** t_embedder: mlp.2(SiLU(mlp.0(timestep_embedding(t_scale·t)))) → [B, D]. */
export function tEmbedder(
  cfg: DiTConfig,
  s: Dims,
  params: Params,
  t: F64,
): { temb: F64; cache: TCache } {
  const tf = timestepEmbedding(t, cfg.t_scale);
  const t1 = linear(
    tf,
    get(params, "t_embedder.mlp.0.weight"),
    get(params, "t_embedder.mlp.0.bias"),
    s.B,
    FREQ,
    s.D,
  );
  const t2 = silu(t1);
  const temb = linear(
    t2,
    get(params, "t_embedder.mlp.2.weight"),
    get(params, "t_embedder.mlp.2.bias"),
    s.B,
    s.D,
    s.D,
  );
  return { temb, cache: { tf, t1, t2 } };
}

function tEmbedderBackward(s: Dims, params: Params, c: TCache, dtemb: F64, grads: Params): void {
  const l2 = linearBackward(c.t2, get(params, "t_embedder.mlp.2.weight"), dtemb, s.B, s.D, s.D);
  accumulate(grads, "t_embedder.mlp.2.weight", l2.dW);
  accumulate(grads, "t_embedder.mlp.2.bias", l2.db);
  const dt1 = siluBackward(c.t1, l2.dx);
  const l0 = linearBackward(c.tf, get(params, "t_embedder.mlp.0.weight"), dt1, s.B, FREQ, s.D);
  accumulate(grads, "t_embedder.mlp.0.weight", l0.dW);
  accumulate(grads, "t_embedder.mlp.0.bias", l0.db);
}

/** y_embedder: embedding_table[y] → [B, D] (label K = null label; no dropout at this level). */
export function yEmbedder(cfg: DiTConfig, s: Dims, params: Params, y: Int32Array): F64 {
  const table = get(params, "y_embedder.embedding_table.weight");
  const out = new Float64Array(s.B * s.D);
  for (let b = 0; b < s.B; b++) {
    const l = y[b];
    if (!(l >= 0 && l <= cfg.num_classes)) throw new Error(`ditRef: label ${l} out of range`);
    for (let d = 0; d < s.D; d++) out[b * s.D + d] = table[l * s.D + d];
  }
  return out;
}

function yEmbedderBackward(
  cfg: DiTConfig,
  s: Dims,
  y: Int32Array,
  dy: F64,
  grads: Params,
): void {
  const g = new Float64Array((cfg.num_classes + 1) * s.D);
  for (let b = 0; b < s.B; b++) {
    for (let d = 0; d < s.D; d++) g[y[b] * s.D + d] += dy[b * s.D + d];
  }
  accumulate(grads, "y_embedder.embedding_table.weight", g);
}

interface BlockCache {
  hIn: F64;
  mod: F64;
  ln1: { xhat: F64; rstd: F64 };
  n1: F64;
  qkv: F64;
  probs: F64;
  a: F64;
  o: F64;
  h1: F64;
  ln2: { xhat: F64; rstd: F64 };
  n2: F64;
  f1: F64;
  gl: F64;
  f2: F64;
}

/** blocks.i (DiTBlock, adaLN-Zero): h → h2 given sc = SiLU(c). */
export function ditBlock(
  s: Dims,
  params: Params,
  i: number,
  h: F64,
  sc: F64,
): { out: F64; cache: BlockCache } {
  const { B, T, D, M, heads } = s;
  const N = B * T;
  const p = (n: string) => get(params, `blocks.${i}.${n}`);
  const mod = linear(
    sc,
    p("adaLN_modulation.1.weight"),
    p("adaLN_modulation.1.bias"),
    B,
    D,
    6 * D,
  );
  // chunks: 0 shift_msa, 1 scale_msa, 2 gate_msa, 3 shift_mlp, 4 scale_mlp, 5 gate_mlp
  const ln1 = layerNorm(h, N, D);
  const n1 = modulate(ln1.xhat, mod, 6, 0, 1, B, T, D);
  const qkv = linear(n1, p("attn.qkv.weight"), p("attn.qkv.bias"), N, D, 3 * D);
  const { a, probs } = attention(qkv, B, T, D, heads);
  const o = linear(a, p("attn.proj.weight"), p("attn.proj.bias"), N, D, D);
  const h1 = gateResidual(h, o, mod, 6, 2, B, T, D);
  const ln2 = layerNorm(h1, N, D);
  const n2 = modulate(ln2.xhat, mod, 6, 3, 4, B, T, D);
  const f1 = linear(n2, p("mlp.fc1.weight"), p("mlp.fc1.bias"), N, D, M);
  const gl = gelu(f1);
  const f2 = linear(gl, p("mlp.fc2.weight"), p("mlp.fc2.bias"), N, M, D);
  const out = gateResidual(h1, f2, mod, 6, 5, B, T, D);
  return { out, cache: { hIn: h, mod, ln1, n1, qkv, probs, a, o, h1, ln2, n2, f1, gl, f2 } };
}

/** Backward of blocks.i: returns dh (input) and adds into dsc; parameter grads into `grads`. */
function ditBlockBackward(
  s: Dims,
  params: Params,
  i: number,
  c: BlockCache,
  sc: F64,
  dout: F64,
  dsc: F64,
  grads: Params,
): F64 {
  const { B, T, D, M, heads } = s;
  const N = B * T;
  const name = (n: string) => `blocks.${i}.${n}`;
  const p = (n: string) => get(params, name(n));
  const dmod = new Float64Array(B * 6 * D);
  // MLP branch
  const dh1 = Float64Array.from(dout);
  const df2 = gateResidualBackward(dout, c.f2, c.mod, dmod, 6, 5, B, T, D);
  const fc2 = linearBackward(c.gl, p("mlp.fc2.weight"), df2, N, M, D);
  accumulate(grads, name("mlp.fc2.weight"), fc2.dW);
  accumulate(grads, name("mlp.fc2.bias"), fc2.db);
  const df1 = geluBackward(c.f1, fc2.dx);
  const fc1 = linearBackward(c.n2, p("mlp.fc1.weight"), df1, N, D, M);
  accumulate(grads, name("mlp.fc1.weight"), fc1.dW);
  accumulate(grads, name("mlp.fc1.bias"), fc1.db);
  const dxhat2 = modulateBackward(fc1.dx, c.ln2.xhat, c.mod, dmod, 6, 3, 4, B, T, D);
  addInto(dh1, layerNormBackward(dxhat2, c.ln2.xhat, c.ln2.rstd, N, D));
  // attention branch
  const dh = Float64Array.from(dh1);
  const dO = gateResidualBackward(dh1, c.o, c.mod, dmod, 6, 2, B, T, D);
  const proj = linearBackward(c.a, p("attn.proj.weight"), dO, N, D, D);
  accumulate(grads, name("attn.proj.weight"), proj.dW);
  accumulate(grads, name("attn.proj.bias"), proj.db);
  const dqkv = attentionBackward(c.qkv, c.probs, proj.dx, B, T, D, heads);
  const qkv = linearBackward(c.n1, p("attn.qkv.weight"), dqkv, N, D, 3 * D);
  accumulate(grads, name("attn.qkv.weight"), qkv.dW);
  accumulate(grads, name("attn.qkv.bias"), qkv.db);
  const dxhat1 = modulateBackward(qkv.dx, c.ln1.xhat, c.mod, dmod, 6, 0, 1, B, T, D);
  addInto(dh, layerNormBackward(dxhat1, c.ln1.xhat, c.ln1.rstd, N, D));
  // adaLN modulation
  const ada = linearBackward(sc, p("adaLN_modulation.1.weight"), dmod, B, D, 6 * D);
  accumulate(grads, name("adaLN_modulation.1.weight"), ada.dW);
  accumulate(grads, name("adaLN_modulation.1.bias"), ada.db);
  addInto(dsc, ada.dx);
  return dh;
}

interface FinalCache {
  hIn: F64;
  fmod: F64;
  ln: { xhat: F64; rstd: F64 };
  nf: F64;
}

/** final_layer: linear(modulate(LN(h), shift, scale)) → o [B·T, p·p·C]. */
export function finalLayer(
  s: Dims,
  params: Params,
  h: F64,
  sc: F64,
): { o: F64; cache: FinalCache } {
  const { B, T, D, P } = s;
  const fmod = linear(
    sc,
    get(params, "final_layer.adaLN_modulation.1.weight"),
    get(params, "final_layer.adaLN_modulation.1.bias"),
    B,
    D,
    2 * D,
  );
  const ln = layerNorm(h, B * T, D);
  const nf = modulate(ln.xhat, fmod, 2, 0, 1, B, T, D);
  const o = linear(
    nf,
    get(params, "final_layer.linear.weight"),
    get(params, "final_layer.linear.bias"),
    B * T,
    D,
    P,
  );
  return { o, cache: { hIn: h, fmod, ln, nf } };
}

function finalLayerBackward(
  s: Dims,
  params: Params,
  c: FinalCache,
  sc: F64,
  dO: F64,
  dsc: F64,
  grads: Params,
): F64 {
  const { B, T, D, P } = s;
  const lin = linearBackward(c.nf, get(params, "final_layer.linear.weight"), dO, B * T, D, P);
  accumulate(grads, "final_layer.linear.weight", lin.dW);
  accumulate(grads, "final_layer.linear.bias", lin.db);
  const dfmod = new Float64Array(B * 2 * D);
  const dxhat = modulateBackward(lin.dx, c.ln.xhat, c.fmod, dfmod, 2, 0, 1, B, T, D);
  const dh = layerNormBackward(dxhat, c.ln.xhat, c.ln.rstd, B * T, D);
  const ada = linearBackward(
    sc,
    get(params, "final_layer.adaLN_modulation.1.weight"),
    dfmod,
    B,
    D,
    2 * D,
  );
  accumulate(grads, "final_layer.adaLN_modulation.1.weight", ada.dW);
  accumulate(grads, "final_layer.adaLN_modulation.1.bias", ada.db);
  addInto(dsc, ada.dx);
  return dh;
}

/** DiT unpatchify: o [B, T, (kh, kw, c)] → [B, C, H, W] (nhwpqc → nchpwq). */
export function unpatchify(o: F64, s: Dims): F64 {
  const { B, C, H, p, g, T, P } = s;
  const out = new Float64Array(B * C * H * H);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < g; r++) {
      for (let q = 0; q < g; q++) {
        for (let kh = 0; kh < p; kh++) {
          for (let kw = 0; kw < p; kw++) {
            for (let c = 0; c < C; c++) {
              out[((b * C + c) * H + r * p + kh) * H + q * p + kw] =
                o[(b * T + r * g + q) * P + (kh * p + kw) * C + c];
            }
          }
        }
      }
    }
  }
  return out;
}

/** Adjoint of unpatchify (a permutation): [B, C, H, W] → [B, T, (kh, kw, c)]. */
function unpatchifyBackward(dOut: F64, s: Dims): F64 {
  const { B, C, H, p, g, T, P } = s;
  const o = new Float64Array(B * T * P);
  for (let b = 0; b < B; b++) {
    for (let r = 0; r < g; r++) {
      for (let q = 0; q < g; q++) {
        for (let kh = 0; kh < p; kh++) {
          for (let kw = 0; kw < p; kw++) {
            for (let c = 0; c < C; c++) {
              o[(b * T + r * g + q) * P + (kh * p + kw) * C + c] =
                dOut[((b * C + c) * H + r * p + kh) * H + q * p + kw];
            }
          }
        }
      }
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// whole model
// ---------------------------------------------------------------------------------------------

export interface DiTCache {
  dims: Dims;
  y: Int32Array;
  patches: F64;
  tCache: TCache;
  c: F64;
  sc: F64;
  blocks: BlockCache[];
  /** Residual stream after each block: hs[0] = embedded input, hs[L] = last block's output. */
  hs: F64[];
  final: FinalCache;
  o: F64;
}

/**
 * DiT forward: x [B, C, H, W], t [B] (flow time; the embedder sees t_scale·t), y [B] labels in
 * 0..K (K = null label; ignored when num_classes = 0). Returns out [B, C, H, W] and a cache.
 */
export function ditForwardRef(
  cfg: DiTConfig,
  params: Params,
  x: F64,
  t: F64,
  y: Int32Array,
): { out: F64; cache: DiTCache } {
  const B = t.length;
  const s = dims(cfg, B);
  if (x.length !== B * s.C * s.H * s.H) throw new Error("ditRef: x has the wrong size");
  const { patches, h: h0 } = xEmbedder(s, params, x);
  const { temb, cache: tCache } = tEmbedder(cfg, s, params, t);
  const c = Float64Array.from(temb);
  if (cfg.num_classes > 0) addInto(c, yEmbedder(cfg, s, params, y));
  const sc = silu(c);
  const hs = [h0];
  const blocks: BlockCache[] = [];
  for (let i = 0; i < cfg.depth; i++) {
    const r = ditBlock(s, params, i, hs[i], sc);
    hs.push(r.out);
    blocks.push(r.cache);
  }
  const { o, cache: final } = finalLayer(s, params, hs[cfg.depth], sc);
  const out = unpatchify(o, s);
  return { out, cache: { dims: s, y, patches, tCache, c, sc, blocks, hs, final, o } };
}

/**
 * Gradients of Σ dOut·out with respect to every trainable parameter (all but pos_embed), by DiT
 * name.
 */
export function ditBackwardRef(
  cfg: DiTConfig,
  params: Params,
  cache: DiTCache,
  dOut: F64,
): Params {
  const s = cache.dims;
  const grads: Params = new Map();
  const dsc = new Float64Array(s.B * s.D);
  const dO = unpatchifyBackward(dOut, s);
  let dh = finalLayerBackward(s, params, cache.final, cache.sc, dO, dsc, grads);
  for (let i = cfg.depth - 1; i >= 0; i--) {
    dh = ditBlockBackward(s, params, i, cache.blocks[i], cache.sc, dh, dsc, grads);
  }
  // x_embedder (pos_embed is fixed: no gradient)
  const pe = linearBackward(
    cache.patches,
    get(params, "x_embedder.proj.weight"),
    dh,
    s.B * s.T,
    s.P,
    s.D,
  );
  accumulate(grads, "x_embedder.proj.weight", pe.dW);
  accumulate(grads, "x_embedder.proj.bias", pe.db);
  // conditioning: c = t_emb + y_emb, sc = SiLU(c)
  const dc = siluBackward(cache.c, dsc);
  tEmbedderBackward(s, params, cache.tCache, dc, grads);
  if (cfg.num_classes > 0) yEmbedderBackward(cfg, s, cache.y, dc, grads);
  // in paramSpecs order
  const ordered: Params = new Map();
  for (const spec of paramSpecs(cfg)) {
    if (!spec.trainable) continue;
    const g = grads.get(spec.name);
    if (!g) throw new Error(`ditRef: no gradient computed for ${spec.name}`);
    ordered.set(spec.name, g);
  }
  return ordered;
}
