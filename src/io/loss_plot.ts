/**
 * The loss curve as a PNG: per-step loss (light) and its exponential moving average (dark) on a
 * log-scale y axis, drawn on plot.ts's axes (tick numbers and labels in the bitmap font).
 */
import { Canvas, drawAxes, type RGB } from "./plot.ts";

const RAW: RGB = [174, 199, 232], SMOOTH: RGB = [31, 119, 180];

/** A loss curve of (step, loss) points as PNG bytes (RGB, `width × height`). */
export function lossCurvePng(
  points: [number, number][],
  width = 720,
  height = 400,
): Promise<Uint8Array> {
  const cv = new Canvas(width, height);
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
  const fr = drawAxes(
    cv,
    { lo: s0, hi: s1, label: "step" },
    { lo: 10 ** lo, hi: 10 ** hi, log: true, label: "loss (log)" },
    [{ name: "per step", color: RAW }, { name: "smoothed", color: SMOOTH }],
  );
  // Curves: line segments, the smoothed one 2 pixels wide and on top.
  const line = (pts: [number, number][], c: RGB, w: number) => {
    for (let i = 1; i < pts.length; i++) {
      cv.line(fr.X(pts[i - 1][0]), fr.Y(pts[i - 1][1]), fr.X(pts[i][0]), fr.Y(pts[i][1]), c, w);
    }
  };
  line(good, RAW, 1);
  line(smooth, SMOOTH, 2);
  return cv.png();
}
