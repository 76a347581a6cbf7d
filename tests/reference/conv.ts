/**
 * Float64 reference of 2D convolution (PyTorch Conv2d: square kernel, zero padding), nearest
 * upsampling and the NCHW/NHWC permutes, forward and backward. Plain loops over the definition
 * (no im2col), written for clarity. Activations are NHWC unless `nchw` says the image side is NCHW.
 */
export type F64 = Float64Array;

export interface ConvShape {
  B: number;
  H: number;
  W: number;
  Cin: number;
  Cout: number;
  k: number;
  s: number;
  pad: number;
  /** x (and dx) NCHW instead of NHWC. */
  nchw?: boolean;
}

export const outSize = (n: number, k: number, s: number, pad: number) =>
  Math.floor((n + 2 * pad - k) / s) + 1;

function xIndex(c: ConvShape, b: number, y: number, x: number, ch: number): number {
  return c.nchw ? ((b * c.Cin + ch) * c.H + y) * c.W + x : ((b * c.H + y) * c.W + x) * c.Cin + ch;
}

/** Calls f(yIndex, xIndex, wIndex) for every (output, input, weight) triple that multiplies. */
function forEachTap(c: ConvShape, f: (yi: number, xi: number, wi: number) => void): void {
  const Ho = outSize(c.H, c.k, c.s, c.pad), Wo = outSize(c.W, c.k, c.s, c.pad);
  for (let b = 0; b < c.B; b++) {
    for (let oy = 0; oy < Ho; oy++) {
      for (let ox = 0; ox < Wo; ox++) {
        for (let co = 0; co < c.Cout; co++) {
          const yi = ((b * Ho + oy) * Wo + ox) * c.Cout + co;
          for (let ci = 0; ci < c.Cin; ci++) {
            for (let ky = 0; ky < c.k; ky++) {
              const iy = oy * c.s + ky - c.pad;
              if (iy < 0 || iy >= c.H) continue;
              for (let kx = 0; kx < c.k; kx++) {
                const ix = ox * c.s + kx - c.pad;
                if (ix < 0 || ix >= c.W) continue;
                f(yi, xIndex(c, b, iy, ix, ci), ((co * c.Cin + ci) * c.k + ky) * c.k + kx);
              }
            }
          }
        }
      }
    }
  }
}

/** y [B, Ho, Wo, Cout] = conv2d(x, w [Cout, Cin, k, k]) + b. */
export function conv2d(x: F64, w: F64, b: F64 | null, c: ConvShape): F64 {
  const Ho = outSize(c.H, c.k, c.s, c.pad), Wo = outSize(c.W, c.k, c.s, c.pad);
  const y = new Float64Array(c.B * Ho * Wo * c.Cout);
  if (b) { for (let i = 0; i < y.length; i++) y[i] = b[i % c.Cout]; }
  forEachTap(c, (yi, xi, wi) => {
    y[yi] += x[xi] * w[wi];
  });
  return y;
}

export function conv2dBackward(
  x: F64,
  w: F64,
  dy: F64,
  c: ConvShape,
): { dx: F64; dw: F64; db: F64 } {
  const dx = new Float64Array(x.length), dw = new Float64Array(w.length);
  const db = new Float64Array(c.Cout);
  for (let i = 0; i < dy.length; i++) db[i % c.Cout] += dy[i];
  forEachTap(c, (yi, xi, wi) => {
    dx[xi] += dy[yi] * w[wi];
    dw[wi] += dy[yi] * x[xi];
  });
  return { dx, dw, db };
}

/** Nearest-neighbour upsampling by `f` of NHWC x [B, H, W, C]. */
export function upsample(x: F64, B: number, H: number, W: number, C: number, f: number): F64 {
  const y = new Float64Array(x.length * f * f);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < H * f; oy++) {
      for (let ox = 0; ox < W * f; ox++) {
        for (let c = 0; c < C; c++) {
          const src = ((b * H + Math.floor(oy / f)) * W + Math.floor(ox / f)) * C + c;
          y[((b * H * f + oy) * W * f + ox) * C + c] = x[src];
        }
      }
    }
  }
  return y;
}

export function upsampleBackward(
  dy: F64,
  B: number,
  H: number,
  W: number,
  C: number,
  f: number,
): F64 {
  const dx = new Float64Array(dy.length / (f * f));
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < H * f; oy++) {
      for (let ox = 0; ox < W * f; ox++) {
        for (let c = 0; c < C; c++) {
          const dst = ((b * H + Math.floor(oy / f)) * W + Math.floor(ox / f)) * C + c;
          dx[dst] += dy[((b * H * f + oy) * W * f + ox) * C + c];
        }
      }
    }
  }
  return dx;
}

/** NHWC [B, H, W, C] from NCHW [B, C, H, W]. */
export function toNhwc(x: F64, B: number, C: number, H: number, W: number): F64 {
  const y = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < H * W; i++) y[(b * H * W + i) * C + c] = x[(b * C + c) * H * W + i];
    }
  }
  return y;
}

/** NCHW [B, C, H, W] from NHWC [B, H, W, C]. */
export function toNchw(x: F64, B: number, H: number, W: number, C: number): F64 {
  const y = new Float64Array(x.length);
  for (let b = 0; b < B; b++) {
    for (let c = 0; c < C; c++) {
      for (let i = 0; i < H * W; i++) y[(b * C + c) * H * W + i] = x[(b * H * W + i) * C + c];
    }
  }
  return y;
}
