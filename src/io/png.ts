/**
 * PNG output: image grids from [-1, 1] tensors and a loss curve, encoded with imagescript.
 */
// deno-lint-ignore no-import-prefix -- full specifier so mod.ts works when imported by URL
import { Image } from "npm:imagescript@1.3.1";

const PAD = 2;

/** RGBA bytes of image `i` of a [N, C, H, W] tensor in [-1, 1] (C = 1 grey, 3 RGB). */
function pixel(
  images: Float32Array,
  C: number,
  H: number,
  i: number,
  y: number,
  x: number,
): number[] {
  const base = i * C * H * H;
  const v = (c: number) => {
    const f = images[base + c * H * H + y * H + x];
    return Math.max(0, Math.min(255, Math.round((f + 1) * 127.5)));
  };
  return C === 1 ? [v(0), v(0), v(0)] : [v(0), v(1), v(2)];
}

/**
 * A grid of `rows × cols` images (row-major: image r·cols + c), each scaled up by `zoom`,
 * separated by 2-pixel padding. Returns PNG bytes.
 */
export async function imageGridPng(
  images: Float32Array,
  shape: { channels: number; size: number },
  rows: number,
  cols: number,
  zoom = 1,
): Promise<Uint8Array> {
  const { channels: C, size: H } = shape;
  if (C !== 1 && C !== 3) throw new Error(`PNG grid: ${C} channels (need 1 or 3)`);
  const n = images.length / (C * H * H);
  const cell = H * zoom;
  const W = cols * cell + (cols + 1) * PAD, Ht = rows * cell + (rows + 1) * PAD;
  const img = new Image(W, Ht);
  const bmp = img.bitmap;
  bmp.fill(255);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const i = r * cols + c;
      if (i >= n) continue;
      const ox = PAD + c * (cell + PAD), oy = PAD + r * (cell + PAD);
      for (let y = 0; y < cell; y++) {
        for (let x = 0; x < cell; x++) {
          const [R, G, B] = pixel(images, C, H, i, Math.floor(y / zoom), Math.floor(x / zoom));
          const o = ((oy + y) * W + ox + x) * 4;
          bmp[o] = R;
          bmp[o + 1] = G;
          bmp[o + 2] = B;
          bmp[o + 3] = 255;
        }
      }
    }
  }
  return await img.encode(1);
}

/** A loss curve (log-scale y) of (step, loss) points as PNG bytes. */
export async function lossCurvePng(
  points: [number, number][],
  width = 640,
  height = 320,
): Promise<Uint8Array> {
  const img = new Image(width, height);
  img.bitmap.fill(255);
  const good = points.filter(([, l]) => Number.isFinite(l) && l > 0);
  if (good.length >= 2) {
    const m = 30;
    const s0 = good[0][0], s1 = good[good.length - 1][0];
    const ls = good.map(([, l]) => Math.log10(l));
    const lo = Math.min(...ls), hi = Math.max(...ls);
    const X = (s: number) => m + (s - s0) / Math.max(1, s1 - s0) * (width - 2 * m);
    const Y = (l: number) =>
      height - m - (Math.log10(l) - lo) / Math.max(1e-9, hi - lo) * (height - 2 * m);
    const axis = Image.rgbaToColor(0, 0, 0, 255);
    img.drawBox(m, m, 1, height - 2 * m, axis);
    img.drawBox(m, height - m, width - 2 * m, 1, axis);
    // grid lines at each power of ten
    for (let p = Math.ceil(lo); p <= Math.floor(hi); p++) {
      img.drawBox(
        m,
        Math.round(Y(10 ** p)),
        width - 2 * m,
        1,
        Image.rgbaToColor(200, 200, 200, 255),
      );
    }
    const line = Image.rgbaToColor(31, 119, 180, 255);
    for (let i = 1; i < good.length; i++) {
      const [xa, ya] = [X(good[i - 1][0]), Y(good[i - 1][1])];
      const [xb, yb] = [X(good[i][0]), Y(good[i][1])];
      const steps = Math.max(1, Math.ceil(Math.max(Math.abs(xb - xa), Math.abs(yb - ya))));
      for (let j = 0; j <= steps; j++) {
        const x = Math.round(xa + (xb - xa) * j / steps),
          y = Math.round(ya + (yb - ya) * j / steps);
        img.drawBox(x, y, 2, 2, line);
      }
    }
  }
  return await img.encode(1);
}
