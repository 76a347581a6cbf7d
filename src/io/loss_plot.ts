/**
 * The loss curve as a PNG: per-step loss (light) and its exponential moving average (dark) on a
 * log-scale y axis, with tick numbers and axis labels drawn in the embedded bitmap font.
 */
import { drawText, GLYPH_H, textWidth } from "./bitmap_font.ts";
import { encodePng } from "./png.ts";

type RGB = readonly [number, number, number];
const BLACK: RGB = [0, 0, 0], GRID: RGB = [225, 225, 225];
const RAW: RGB = [174, 199, 232], SMOOTH: RGB = [31, 119, 180];
const S = 2; // font scale

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
    out.push(Number(v.toPrecision(12)));
  }
  return out;
}

/** A loss curve of (step, loss) points as PNG bytes (RGB, `width × height`). */
export function lossCurvePng(
  points: [number, number][],
  width = 720,
  height = 400,
): Promise<Uint8Array> {
  const px = new Uint8Array(width * height * 3).fill(255);
  const set = (x: number, y: number, c: RGB) => {
    x = Math.round(x), y = Math.round(y);
    if (x < 0 || y < 0 || x >= width || y >= height) return;
    px.set(c, (y * width + x) * 3);
  };
  const good = points.filter(([s, l]) => Number.isFinite(s) && Number.isFinite(l) && l > 0);
  const smooth: [number, number][] = [];
  let ema = NaN;
  for (const [s, l] of good) {
    ema = Number.isNaN(ema) ? l : 0.95 * ema + 0.05 * l;
    smooth.push([s, ema]);
  }
  // Ranges: steps linear, loss in log10 with a little headroom.
  const s0 = good.length ? good[0][0] : 0;
  const s1 = good.length > 1 ? good[good.length - 1][0] : s0 + 1;
  const logs = good.map(([, l]) => Math.log10(l));
  let lo = logs.length ? Math.min(...logs) : -1, hi = logs.length ? Math.max(...logs) : 0;
  if (hi - lo < 0.1) [lo, hi] = [(lo + hi) / 2 - 0.05, (lo + hi) / 2 + 0.05];
  const pad = (hi - lo) * 0.03;
  lo -= pad, hi += pad;
  const yTicks = logTicks(lo, hi), xTicks = linearTicks(s0, s1);
  const left = 16 + Math.max(0, ...yTicks.map((v) => textWidth(tickLabel(v), S)));
  const top = 12 + GLYPH_H * S + 10, right = 24, bottom = 16 + 2 * GLYPH_H * S + 12;
  const X = (s: number) => left + (s - s0) / (s1 - s0) * (width - left - right);
  const Y = (l: number) =>
    height - bottom - (Math.log10(l) - lo) / (hi - lo) * (height - top - bottom);
  // Grid, axes, ticks and their numbers.
  for (const v of yTicks) {
    const y = Math.round(Y(v));
    for (let x = left; x <= width - right; x++) set(x, y, GRID);
    for (let x = left - 5; x < left; x++) set(x, y, BLACK);
    const t = tickLabel(v);
    drawText(t, left - 8 - textWidth(t, S), y - (GLYPH_H * S) / 2, S, (a, b) => set(a, b, BLACK));
  }
  for (const v of xTicks) {
    const x = Math.round(X(v));
    for (let y = top; y <= height - bottom; y++) set(x, y, GRID);
    for (let y = height - bottom; y < height - bottom + 5; y++) set(x, y, BLACK);
    const t = tickLabel(v);
    drawText(t, x - textWidth(t, S) / 2, height - bottom + 8, S, (a, b) => set(a, b, BLACK));
  }
  for (let y = top; y <= height - bottom; y++) set(left, y, BLACK);
  for (let x = left; x <= width - right; x++) set(x, height - bottom, BLACK);
  const xl = "step";
  drawText(
    xl,
    (left + width - right - textWidth(xl, S)) / 2,
    height - 12 - GLYPH_H * S,
    S,
    (a, b) => set(a, b, BLACK),
  );
  drawText("loss (log)", 8, 8, S, (a, b) => set(a, b, BLACK));
  // Legend, top right.
  let lx = width - right - textWidth("per step", S) - textWidth("smoothed", S) - 70;
  for (const [label, c] of [["per step", RAW], ["smoothed", SMOOTH]] as const) {
    for (let i = 0; i < 16; i++) for (let w = 0; w < 3; w++) set(lx + i, 8 + GLYPH_H + w - 1, c);
    drawText(label, lx + 22, 8, S, (a, b) => set(a, b, BLACK));
    lx += 22 + textWidth(label, S) + 18;
  }
  // Curves: line segments, the smoothed one 2 pixels wide and on top.
  const line = (pts: [number, number][], c: RGB, w: number) => {
    for (let i = 1; i < pts.length; i++) {
      const xa = X(pts[i - 1][0]), ya = Y(pts[i - 1][1]), xb = X(pts[i][0]), yb = Y(pts[i][1]);
      const n = Math.max(1, Math.ceil(Math.max(Math.abs(xb - xa), Math.abs(yb - ya))));
      for (let j = 0; j <= n; j++) {
        const x = xa + (xb - xa) * j / n, y = ya + (yb - ya) * j / n;
        for (let d = 0; d < w; d++) set(x, y + d, c);
      }
    }
  };
  line(good, RAW, 1);
  line(smooth, SMOOTH, 2);
  return encodePng(px, width, height, 3);
}
