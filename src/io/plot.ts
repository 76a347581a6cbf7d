/**
 * A small line plot drawn into an RGBA pixel buffer (axes, ticks with labels, one coloured line
 * with markers per series, a legend, a 5×7 bitmap font), e.g. FD against NFE per solver for
 * `deno task eval --sweep`. Only `encodeRgbaPng` touches a PNG encoder.
 */
// deno-lint-ignore no-import-prefix -- full specifier so mod.ts works when imported by URL
import { Image } from "npm:imagescript@1.3.1";

export interface Series {
  name: string;
  /** (x, y) points; drawn in the order given. */
  points: [number, number][];
}

export interface PlotOptions {
  width?: number;
  height?: number;
  title?: string;
  xLabel?: string;
  yLabel?: string;
  /** Log-scale x axis (default false). */
  logX?: boolean;
  /** Log-scale y axis (default: when the positive y values span more than 20×). */
  logY?: boolean;
}

/** An RGBA image, row-major, 4 bytes a pixel. */
export interface Rgba {
  width: number;
  height: number;
  data: Uint8ClampedArray;
}

type Color = [number, number, number];
const PALETTE: Color[] = [
  [31, 119, 180],
  [255, 127, 14],
  [44, 160, 44],
  [214, 39, 40],
  [148, 103, 189],
  [140, 86, 75],
  [227, 119, 194],
  [127, 127, 127],
  [188, 189, 34],
  [23, 190, 207],
];

// 5×7 glyphs (HD44780 style): 7 rows, bit 4 = leftmost column. Upper case falls back to lower
// case where no capital is drawn; unknown characters are blank.
const GLYPHS: Record<string, number[]> = {
  "0": [14, 17, 19, 21, 25, 17, 14],
  "1": [4, 12, 4, 4, 4, 4, 14],
  "2": [14, 17, 1, 2, 4, 8, 31],
  "3": [31, 2, 4, 2, 1, 17, 14],
  "4": [2, 6, 10, 18, 31, 2, 2],
  "5": [31, 16, 30, 1, 1, 17, 14],
  "6": [6, 8, 16, 30, 17, 17, 14],
  "7": [31, 1, 2, 4, 8, 8, 8],
  "8": [14, 17, 17, 14, 17, 17, 14],
  "9": [14, 17, 17, 15, 1, 2, 12],
  ".": [0, 0, 0, 0, 0, 12, 12],
  "-": [0, 0, 0, 31, 0, 0, 0],
  "+": [0, 4, 4, 31, 4, 4, 0],
  "=": [0, 0, 31, 0, 31, 0, 0],
  ",": [0, 0, 0, 0, 12, 4, 8],
  "(": [2, 4, 8, 8, 8, 4, 2],
  ")": [8, 4, 2, 2, 2, 4, 8],
  "/": [0, 1, 2, 4, 8, 16, 0],
  ":": [0, 12, 12, 0, 12, 12, 0],
  "%": [24, 25, 2, 4, 8, 19, 3],
  "×": [0, 17, 10, 4, 10, 17, 0],
  a: [0, 0, 14, 1, 15, 17, 15],
  b: [16, 16, 22, 25, 17, 17, 30],
  c: [0, 0, 14, 16, 16, 17, 14],
  d: [1, 1, 13, 19, 17, 17, 15],
  e: [0, 0, 14, 17, 31, 16, 14],
  f: [6, 9, 8, 28, 8, 8, 8],
  g: [0, 15, 17, 17, 15, 1, 14],
  h: [16, 16, 22, 25, 17, 17, 17],
  i: [4, 0, 12, 4, 4, 4, 14],
  j: [2, 0, 6, 2, 2, 18, 12],
  k: [16, 16, 18, 20, 24, 20, 18],
  l: [12, 4, 4, 4, 4, 4, 14],
  m: [0, 0, 26, 21, 21, 17, 17],
  n: [0, 0, 22, 25, 17, 17, 17],
  o: [0, 0, 14, 17, 17, 17, 14],
  p: [0, 0, 30, 17, 30, 16, 16],
  q: [0, 0, 13, 19, 15, 1, 1],
  r: [0, 0, 22, 25, 16, 16, 16],
  s: [0, 0, 14, 16, 14, 1, 30],
  t: [8, 8, 28, 8, 8, 9, 6],
  u: [0, 0, 17, 17, 17, 19, 13],
  v: [0, 0, 17, 17, 17, 10, 4],
  w: [0, 0, 17, 17, 21, 21, 10],
  x: [0, 0, 17, 10, 4, 10, 17],
  y: [0, 0, 17, 17, 15, 1, 14],
  z: [0, 0, 31, 2, 4, 8, 31],
  C: [14, 17, 16, 16, 16, 17, 14],
  D: [28, 18, 17, 17, 17, 18, 28],
  E: [31, 16, 16, 30, 16, 16, 31],
  F: [31, 16, 16, 30, 16, 16, 16],
  G: [14, 17, 16, 23, 17, 17, 15],
  N: [17, 17, 25, 21, 19, 17, 17],
  P: [30, 17, 17, 30, 16, 16, 16],
  R: [30, 17, 17, 30, 20, 18, 17],
};

class Canvas implements Rgba {
  readonly data: Uint8ClampedArray;
  constructor(readonly width: number, readonly height: number) {
    this.data = new Uint8ClampedArray(width * height * 4).fill(255);
  }
  px(x: number, y: number, c: Color): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    const o = (y * this.width + x) * 4;
    this.data[o] = c[0];
    this.data[o + 1] = c[1];
    this.data[o + 2] = c[2];
    this.data[o + 3] = 255;
  }
  rect(x: number, y: number, w: number, h: number, c: Color): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.px(x + i, y + j, c);
  }
  line(x0: number, y0: number, x1: number, y1: number, c: Color, thick = 1): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    const o = Math.floor((thick - 1) / 2);
    for (let s = 0; s <= n; s++) {
      this.rect(x0 + (x1 - x0) * s / n - o, y0 + (y1 - y0) * s / n - o, thick, thick, c);
    }
  }
  /** Text with its top-left corner at (x, y); returns the width drawn. */
  text(s: string, x: number, y: number, c: Color, scale = 1, vertical = false): number {
    let pos = 0;
    for (const ch of s) {
      const g = GLYPHS[ch] ?? GLYPHS[ch.toLowerCase()];
      if (g) {
        for (let r = 0; r < 7; r++) {
          for (let col = 0; col < 5; col++) {
            if (!(g[r] & (16 >> col))) continue;
            // Vertical text reads bottom to top (a y-axis label).
            const dx = vertical ? r : pos + col, dy = vertical ? -(pos + col) : r;
            this.rect(x + dx * scale, y + dy * scale, scale, scale, c);
          }
        }
      }
      pos += 6;
    }
    return pos * scale;
  }
}

/** Width in pixels of `s` in the 5×7 font at `scale`. */
export function textWidth(s: string, scale = 1): number {
  return [...s].length * 6 * scale;
}

/** About `count` round tick values covering [lo, hi] (steps of 1, 2 or 5 × 10^k). */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    out.push(Math.abs(v) < step * 1e-9 ? 0 : Number(v.toPrecision(12)));
  }
  return out;
}

/** Ticks of a log axis: 1, 2, 5 × 10^k inside [lo, hi] (fewer when there are many decades). */
function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const decades = Math.log10(hi / lo);
  const mult = decades > 4 ? [1] : decades > 1.5 ? [1, 2, 5] : [1, 1.5, 2, 3, 5, 7];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) {
    for (const m of mult) {
      const v = m * 10 ** e;
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(Number(v.toPrecision(6)));
    }
  }
  return out.length >= 2 ? out : [lo, hi];
}

function fmtTick(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(0).replace("e+", "e");
  return String(Number(v.toPrecision(4)));
}

/** Draw series as lines with markers; returns the pixels. */
export function drawLinePlot(series: Series[], opts: PlotOptions = {}): Rgba {
  const W = opts.width ?? 800, H = opts.height ?? 500;
  const cv = new Canvas(W, H);
  const black: Color = [0, 0, 0], grid: Color = [225, 225, 225], grey: Color = [90, 90, 90];
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => isFinite(x) && isFinite(y));
  const left = 70, right = 20, top = opts.title ? 40 : 20, bottom = 55;
  const pw = W - left - right, ph = H - top - bottom;
  if (opts.title) {
    cv.text(opts.title, Math.max(4, (W - textWidth(opts.title, 2)) / 2), 10, black, 2);
  }
  if (pts.length === 0) {
    cv.text("no data", left + pw / 2 - 21, top + ph / 2, grey, 1);
    return cv;
  }
  const logX = opts.logX ?? false;
  const ys = pts.map((p) => p[1]);
  const posY = ys.filter((y) => y > 0);
  const logY = opts.logY ??
    (posY.length === ys.length && Math.max(...posY) / Math.min(...posY) > 20);
  const tx = (v: number) => logX ? Math.log10(v) : v;
  const ty = (v: number) => logY ? Math.log10(v) : v;
  let x0 = Math.min(...pts.map((p) => p[0])), x1 = Math.max(...pts.map((p) => p[0]));
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (!logY && y0 > 0 && y0 < 0.5 * y1) y0 = 0; // start at 0 when that costs little
  if (x1 === x0) [x0, x1] = logX ? [x0 / 2, x1 * 2] : [x0 - 1, x1 + 1];
  if (y1 === y0) [y0, y1] = logY ? [y0 / 2, y1 * 2] : [y0 - 1, y1 + 1];
  // Axis ranges in plotted (possibly log) coordinates, with 5% margins (none below a 0 start).
  const xa = tx(x0) - 0.05 * (tx(x1) - tx(x0)), xb = tx(x1) + 0.05 * (tx(x1) - tx(x0));
  const ya = y0 === 0 && !logY ? 0 : ty(y0) - 0.05 * (ty(y1) - ty(y0));
  const yb = ty(y1) + 0.05 * (ty(y1) - ty(y0));
  const X = (v: number) => left + (tx(v) - xa) / (xb - xa) * pw;
  const Y = (v: number) => top + ph - (ty(v) - ya) / (yb - ya) * ph;
  const back = (t: number, log: boolean) => log ? 10 ** t : t;
  const [vx0, vx1] = [back(xa, logX), back(xb, logX)],
    [vy0, vy1] = [back(ya, logY), back(yb, logY)];
  const xt = logX ? logTicks(vx0, vx1) : niceTicks(vx0, vx1, 6);
  const yt = logY ? logTicks(vy0, vy1) : niceTicks(vy0, vy1, 5);
  for (const v of xt) {
    const px = X(v);
    cv.line(px, top, px, top + ph, grid);
    cv.line(px, top + ph, px, top + ph + 4, black);
    const s = fmtTick(v);
    cv.text(s, px - textWidth(s) / 2, top + ph + 8, black);
  }
  for (const v of yt) {
    const py = Y(v);
    cv.line(left, py, left + pw, py, grid);
    cv.line(left - 4, py, left, py, black);
    const s = fmtTick(v);
    cv.text(s, left - 8 - textWidth(s), py - 3, black);
  }
  cv.line(left, top, left, top + ph, black);
  cv.line(left, top + ph, left + pw, top + ph, black);
  if (opts.xLabel) {
    const s = opts.xLabel + (logX ? " (log)" : "");
    cv.text(s, left + (pw - textWidth(s, 2)) / 2, H - 22, black, 2);
  }
  if (opts.yLabel) {
    const s = opts.yLabel + (logY ? " (log)" : "");
    cv.text(s, 8, top + (ph + textWidth(s, 2)) / 2, black, 2, true);
  }
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    const p = s.points.filter(([x, y]) => isFinite(x) && isFinite(y));
    for (let j = 1; j < p.length; j++) {
      cv.line(X(p[j - 1][0]), Y(p[j - 1][1]), X(p[j][0]), Y(p[j][1]), c, 2);
    }
    for (const [x, y] of p) cv.rect(X(x) - 3, Y(y) - 3, 7, 7, c);
  });
  // Legend, top right.
  const lw = Math.max(...series.map((s) => textWidth(s.name))) + 30;
  const lx = left + pw - lw - 8, ly = top + 8;
  cv.rect(lx, ly, lw, series.length * 14 + 8, [255, 255, 255]);
  series.forEach((s, i) => {
    const c = PALETTE[i % PALETTE.length];
    cv.rect(lx + 6, ly + 6 + i * 14, 14, 7, c);
    cv.text(s.name, lx + 24, ly + 6 + i * 14, black);
  });
  return cv;
}

/** PNG bytes of an RGBA image (the one place this file uses a PNG encoder). */
export async function encodeRgbaPng(img: Rgba): Promise<Uint8Array> {
  const im = new Image(img.width, img.height);
  im.bitmap.set(img.data);
  return await im.encode(1);
}

/** A line plot as PNG bytes. */
export function linePlotPng(series: Series[], opts: PlotOptions = {}): Promise<Uint8Array> {
  return encodeRgbaPng(drawLinePlot(series, opts));
}
