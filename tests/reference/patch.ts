/** Float64 reference of the patch family: im2col, positional embedding add, DiT unpatchify. */
export type F64 = Float64Array;

/** cols [B*T, C*p*p] (columns (c, kh, kw)) from img [B,C,H,W]: the stride-p conv's im2col. */
export function im2col(img: F64, B: number, C: number, H: number, W: number, p: number): F64 {
  const h = H / p, w = W / p, P = C * p * p;
  const cols = new Float64Array(B * h * w * P);
  for (let b = 0; b < B; b++) {
    for (let ph = 0; ph < h; ph++) {
      for (let pw = 0; pw < w; pw++) {
        const row = (b * h + ph) * w + pw;
        for (let c = 0; c < C; c++) {
          for (let kh = 0; kh < p; kh++) {
            for (let kw = 0; kw < p; kw++) {
              const col = (c * p + kh) * p + kw;
              cols[row * P + col] = img[((b * C + c) * H + ph * p + kh) * W + pw * p + kw];
            }
          }
        }
      }
    }
  }
  return cols;
}

/** Stride-p Conv2d of img [B,C,H,W] with weight [D,C,p,p] (no bias): out [B*T, D] tokens. */
export function patchConv(
  img: F64,
  weight: F64,
  B: number,
  C: number,
  H: number,
  W: number,
  p: number,
  D: number,
): F64 {
  const h = H / p, w = W / p;
  const out = new Float64Array(B * h * w * D);
  for (let b = 0; b < B; b++) {
    for (let ph = 0; ph < h; ph++) {
      for (let pw = 0; pw < w; pw++) {
        for (let d = 0; d < D; d++) {
          let s = 0;
          for (let c = 0; c < C; c++) {
            for (let kh = 0; kh < p; kh++) {
              for (let kw = 0; kw < p; kw++) {
                s += weight[((d * C + c) * p + kh) * p + kw] *
                  img[((b * C + c) * H + ph * p + kh) * W + pw * p + kw];
              }
            }
          }
          out[((b * h + ph) * w + pw) * D + d] = s;
        }
      }
    }
  }
  return out;
}

/** dimg [B,C,H,W] from dcols (the adjoint of im2col; a permutation for stride == kernel). */
export function im2colBackward(
  dcols: F64,
  B: number,
  C: number,
  H: number,
  W: number,
  p: number,
): F64 {
  const h = H / p, w = W / p, P = C * p * p;
  const dimg = new Float64Array(B * C * H * W);
  for (let b = 0; b < B; b++) {
    for (let ph = 0; ph < h; ph++) {
      for (let pw = 0; pw < w; pw++) {
        const row = (b * h + ph) * w + pw;
        for (let c = 0; c < C; c++) {
          for (let kh = 0; kh < p; kh++) {
            for (let kw = 0; kw < p; kw++) {
              const col = (c * p + kh) * p + kw;
              dimg[((b * C + c) * H + ph * p + kh) * W + pw * p + kw] += dcols[row * P + col];
            }
          }
        }
      }
    }
  }
  return dimg;
}

/** h [B*T, D] + pos [T, D] broadcast over B. */
export function addPosEmbed(h: F64, pos: F64): F64 {
  return h.map((v, i) => v + pos[i % pos.length]);
}

/**
 * DiT unpatchify, written as its three steps: x.reshape(B, h, w, p, p, C);
 * einsum('nhwpqc->nchpwq'); reshape(B, C, h*p, w*p).
 */
export function unpatchify(o: F64, B: number, C: number, H: number, W: number, p: number): F64 {
  const h = H / p, w = W / p;
  // x[n, hh, ww, pp, qq, c] at o's flat index (row-major reshape is a no-op on the data).
  const x = (n: number, hh: number, ww: number, pp: number, qq: number, c: number) =>
    o[(((((n * h + hh) * w + ww) * p + pp) * p + qq) * C) + c];
  // einsum result y[n, c, hh, pp, ww, qq], then reshape to [B, C, h*p, w*p].
  const img = new Float64Array(B * C * H * W);
  for (let n = 0; n < B; n++) {
    for (let c = 0; c < C; c++) {
      for (let hh = 0; hh < h; hh++) {
        for (let pp = 0; pp < p; pp++) {
          for (let ww = 0; ww < w; ww++) {
            for (let qq = 0; qq < p; qq++) {
              const flat = ((((n * C + c) * h + hh) * p + pp) * w + ww) * p + qq;
              img[flat] = x(n, hh, ww, pp, qq, c);
            }
          }
        }
      }
    }
  }
  return img;
}

/** do from dimg (the adjoint of unpatchify). */
export function unpatchifyBackward(
  dimg: F64,
  B: number,
  C: number,
  H: number,
  W: number,
  p: number,
): F64 {
  const h = H / p, w = W / p;
  const d = new Float64Array(dimg.length);
  for (let n = 0; n < B; n++) {
    for (let c = 0; c < C; c++) {
      for (let hh = 0; hh < h; hh++) {
        for (let pp = 0; pp < p; pp++) {
          for (let ww = 0; ww < w; ww++) {
            for (let qq = 0; qq < p; qq++) {
              const flat = ((((n * C + c) * h + hh) * p + pp) * w + ww) * p + qq;
              d[(((((n * h + hh) * w + ww) * p + pp) * p + qq) * C) + c] += dimg[flat];
            }
          }
        }
      }
    }
  }
  return d;
}
