/**
 * Line plots as PNG without a plotting library: an RGB canvas, and ONE axis implementation
 * (`drawAxes`: linear or log10 scales, 1-2-5 ticks with numbers in the bitmap font, grid, axis
 * labels, a legend row) shared by the training loss curve (loss_plot.ts) and `deno task eval
 * --sweep`'s FD against NFE (`linePlotPng`). Written by the deterministic encoder of png.ts.
 */
import { drawText, GLYPH_H, textWidth } from "./bitmap_font.ts";
import { encodePng } from "./png.ts";

export type RGB = readonly [number, number, number];
export const BLACK: RGB = [0, 0, 0], GRID: RGB = [225, 225, 225];
/** Series colours (matplotlib's tab10). */
export const PALETTE: readonly RGB[] = [
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
/** Font scale of every label. */
const S = 2;

/** An RGB image on white; pixels outside are ignored. */
export class Canvas {
  readonly px: Uint8Array;
  constructor(readonly width: number, readonly height: number) {
    this.px = new Uint8Array(width * height * 3).fill(255);
  }
  set(x: number, y: number, c: RGB): void {
    x = Math.round(x), y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.px.set(c, (y * this.width + x) * 3);
  }
  rect(x: number, y: number, w: number, h: number, c: RGB): void {
    for (let j = 0; j < h; j++) for (let i = 0; i < w; i++) this.set(x + i, y + j, c);
  }
  /** A segment `thick` pixels tall (drawn downwards from the line). */
  line(x0: number, y0: number, x1: number, y1: number, c: RGB, thick = 1): void {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0))));
    for (let j = 0; j <= n; j++) {
      const x = x0 + (x1 - x0) * j / n, y = y0 + (y1 - y0) * j / n;
      for (let d = 0; d < thick; d++) this.set(x, y + d, c);
    }
  }
  /** Text in the bitmap font at scale 2, top-left corner at (x, y). */
  text(s: string, x: number, y: number, c: RGB = BLACK): void {
    drawText(s, Math.round(x), Math.round(y), S, (a, b) => this.set(a, b, c));
  }
  png(): Promise<Uint8Array> {
    return encodePng(this.px, this.width, this.height, 3);
  }
}

/** Tick label: plain digits from 0.001 to 99999, else exponent form ("1e-4"). */
export function tickLabel(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e-3 && a < 1e5) return String(Number(v.toPrecision(3)));
  return v.toExponential().replace(/\.?0+e/, "e");
}

/** Log-axis ticks in [lo, hi] (log10 units): powers of ten, or 1-2-5, or 1..9 per decade. */
export function logTicks(lo: number, hi: number): number[] {
  for (const mant of [[1], [1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    const out: number[] = [];
    for (let p = Math.floor(lo); p <= Math.ceil(hi); p++) {
      for (const m of mant) {
        const v = Number((m * 10 ** p).toPrecision(12));
        const l = Math.log10(v);
        if (l >= lo - 1e-9 && l <= hi + 1e-9) out.push(v);
      }
    }
    if (out.length >= 3 || mant.length === 9) {
      return out.length <= 12 ? out : out.filter((_, i) => i % 2 === 0);
    }
  }
  return [];
}

/** Linear ticks at multiples of a 1-2-5 step, about `n` of them in [a, b]. */
export function linearTicks(a: number, b: number, n = 6): number[] {
  const raw = (b - a) / n;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let v = Math.ceil(a / step) * step; v <= b + 1e-9 * step; v += step) {
    const t = Number(v.toPrecision(12));
    out.push(Math.abs(t) < 1e-9 * step ? 0 : t);
  }
  return out;
}

/** One axis: its range in data units (lo < hi; > 0 on a log axis), scale and label. */
export interface Axis {
  lo: number;
  hi: number;
  log?: boolean;
  label: string;
}

/** Data → pixel maps of a drawn frame, and the plot area. */
export interface Frame {
  X(v: number): number;
  Y(v: number): number;
  left: number;
  top: number;
  right: number;
  bottom: number;
}

export interface LegendItem {
  name: string;
  color: RGB;
}

const LEGEND_GAP = 18, SWATCH = 16;

/** Legend items laid out right-aligned in rows of at most `width` pixels. */
function legendRows(items: LegendItem[], width: number): LegendItem[][] {
  const rows: LegendItem[][] = [];
  let w = Infinity;
  for (const it of items) {
    const iw = SWATCH + 6 + textWidth(it.name, S) + LEGEND_GAP;
    if (w + iw > width) {
      rows.push([]);
      w = 0;
    }
    rows[rows.length - 1].push(it);
    w += iw;
  }
  return rows;
}

/**
 * Draw a frame: grid lines and ticks with numbers on both axes, the axes, the x label centred
 * below, the y label top left, and the legend (swatch + name) right-aligned in the top rows.
 * Returns the maps of data values to pixels.
 */
export function drawAxes(cv: Canvas, x: Axis, y: Axis, legend: LegendItem[] = []): Frame {
  const W = cv.width, H = cv.height, rowH = GLYPH_H * S + 8;
  const f = (a: Axis) => (v: number) => a.log ? Math.log10(v) : v;
  const fx = f(x), fy = f(y);
  const ticks = (a: Axis) =>
    a.log ? logTicks(Math.log10(a.lo), Math.log10(a.hi)) : linearTicks(a.lo, a.hi);
  const yTicks = ticks(y), xTicks = ticks(x);
  const left = 16 + Math.max(0, ...yTicks.map((v) => textWidth(tickLabel(v), S)));
  const right = 24;
  const rows = legendRows(legend, W - right - left - textWidth(y.label, S));
  const top = 12 + Math.max(1, rows.length) * rowH + 2;
  const bottom = 16 + 2 * GLYPH_H * S + 12;
  const X = (v: number) => left + (fx(v) - fx(x.lo)) / (fx(x.hi) - fx(x.lo)) * (W - left - right);
  const Y = (v: number) =>
    H - bottom - (fy(v) - fy(y.lo)) / (fy(y.hi) - fy(y.lo)) * (H - top - bottom);
  for (const v of yTicks) {
    const py = Math.round(Y(v));
    for (let px = left; px <= W - right; px++) cv.set(px, py, GRID);
    for (let px = left - 5; px < left; px++) cv.set(px, py, BLACK);
    const t = tickLabel(v);
    cv.text(t, left - 8 - textWidth(t, S), py - (GLYPH_H * S) / 2);
  }
  for (const v of xTicks) {
    const px = Math.round(X(v));
    for (let py = top; py <= H - bottom; py++) cv.set(px, py, GRID);
    for (let py = H - bottom; py < H - bottom + 5; py++) cv.set(px, py, BLACK);
    const t = tickLabel(v);
    cv.text(t, px - textWidth(t, S) / 2, H - bottom + 8);
  }
  for (let py = top; py <= H - bottom; py++) cv.set(left, py, BLACK);
  for (let px = left; px <= W - right; px++) cv.set(px, H - bottom, BLACK);
  cv.text(x.label, (left + W - right - textWidth(x.label, S)) / 2, H - 12 - GLYPH_H * S);
  cv.text(y.label, 8, 8);
  rows.forEach((row, r) => {
    const widths = row.map((it) => SWATCH + 6 + textWidth(it.name, S));
    let lx = W - right - widths.reduce((a, b) => a + b, 0) - LEGEND_GAP * (row.length - 1);
    const ly = 8 + r * rowH;
    row.forEach((it, i) => {
      cv.rect(lx, ly + GLYPH_H - 1, SWATCH, 3, it.color);
      cv.text(it.name, lx + SWATCH + 6, ly);
      lx += widths[i] + LEGEND_GAP;
    });
  });
  return { X, Y, left, top, right, bottom: H - bottom };
}

export interface Series {
  name: string;
  /** (x, y) points; drawn in the order given. */
  points: [number, number][];
}

export interface PlotOptions {
  width?: number;
  height?: number;
  xLabel?: string;
  yLabel?: string;
  /** Log-scale x axis (default false). */
  logX?: boolean;
  /** Log-scale y axis (default: when the positive y values span more than 20×). */
  logY?: boolean;
  /** Square markers at the points (default true; off for dense curves). */
  markers?: boolean;
}

/** A range [lo, hi] with 5% margins in plotted units (log10 on a log axis), never empty. */
function padded(vals: number[], log: boolean, fromZero: boolean): [number, number] {
  const t = vals.map((v) => log ? Math.log10(v) : v);
  let a = Math.min(...t), b = Math.max(...t);
  if (b === a) [a, b] = log ? [a - 0.3, b + 0.3] : [a - Math.max(1, Math.abs(a) / 2), b + 1];
  const m = 0.05 * (b - a);
  const lo = fromZero ? 0 : a - m, hi = b + m;
  return log ? [10 ** lo, 10 ** hi] : [lo, hi];
}

/**
 * Series as lines with square markers on one frame (e.g. FD against NFE per solver, log x).
 * Non-finite points (and non-positive ones on a log axis) are left out.
 */
export function linePlotPng(series: Series[], opts: PlotOptions = {}): Promise<Uint8Array> {
  const cv = new Canvas(opts.width ?? 720, opts.height ?? 400);
  const logX = opts.logX ?? false;
  const ok = (p: [number, number], logY: boolean) =>
    Number.isFinite(p[0]) && Number.isFinite(p[1]) && (!logX || p[0] > 0) && (!logY || p[1] > 0);
  const all = series.flatMap((s) => s.points).filter((p) => ok(p, false));
  const ys = all.map((p) => p[1]);
  const logY = opts.logY ??
    (ys.length > 0 && ys.every((v) => v > 0) && Math.max(...ys) / Math.min(...ys) > 20);
  const pts = all.filter((p) => ok(p, logY));
  const xs = pts.length ? pts.map((p) => p[0]) : [1];
  const yv = pts.length ? pts.map((p) => p[1]) : [1];
  // A linear y axis starts at 0 when that costs little (the values' floor is visible).
  const fromZero = !logY && Math.min(...yv) > 0 && Math.min(...yv) < 0.5 * Math.max(...yv);
  const [x0, x1] = padded(xs, logX, false), [y0, y1] = padded(yv, logY, fromZero);
  const legend = series.map((s, i) => ({ name: s.name, color: PALETTE[i % PALETTE.length] }));
  const fr = drawAxes(
    cv,
    { lo: x0, hi: x1, log: logX, label: `${opts.xLabel ?? "x"}${logX ? " (log)" : ""}` },
    { lo: y0, hi: y1, log: logY, label: `${opts.yLabel ?? "y"}${logY ? " (log)" : ""}` },
    legend,
  );
  const kept = series.map((s) => s.points.filter((q) => ok(q, logY)));
  kept.forEach((p, i) => {
    for (let j = 1; j < p.length; j++) {
      const c = legend[i].color;
      cv.line(fr.X(p[j - 1][0]), fr.Y(p[j - 1][1]), fr.X(p[j][0]), fr.Y(p[j][1]), c, 2);
    }
  });
  // Markers after every line, so no later series' line hides an earlier series' points.
  if (opts.markers !== false) {
    kept.forEach((p, i) => {
      for (const [x, y] of p) {
        cv.rect(Math.round(fr.X(x)) - 3, Math.round(fr.Y(y)) - 3, 7, 7, legend[i].color);
      }
    });
  }
  return cv.png();
}
