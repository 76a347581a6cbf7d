/**
 * Several training runs' loss curves on one plot, and how far apart they end: for the f16 vs
 * f32 convergence proof (BENCHMARKS.md, "Mixed precision and the fused step").
 *
 *   deno run -A scripts/loss_curves.ts runs/conv-f32-s0 runs/conv-f16-s0 runs/conv-f32-s1 \
 *     --out loss_f16_vs_f32.png
 *
 * Each argument is a run directory (its metrics.jsonl) or a metrics.jsonl file; the label is the
 * folder's name. Drawn: each run's smoothed loss (EMA 0.95, as the training progress line) on a
 * log axis, one colour a run. Printed: each run's mean loss over the last `--tail` steps (default
 * 300) and its difference from the first run, which for the proof reads |f16 − f32| against the
 * seed-to-seed |f32 seed 1 − f32 seed 0|.
 */
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { encodePng, writeFileAtomic } from "../mod.ts";
import { drawText, GLYPH_H, GLYPHS, textWidth } from "../src/io/bitmap_font.ts";

type RGB = [number, number, number];
type Points = [number, number][];

/** Runs' smoothed curves, log loss axis, legend: PNG bytes. */
export function lossCurvesPng(runs: { label: string; points: Points }[], W = 900, H = 500) {
  const COLORS: RGB[] = [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40]];
  const px = new Uint8Array(W * H * 3).fill(255);
  const set = (x: number, y: number, c: RGB) => {
    x = Math.round(x), y = Math.round(y);
    if (x >= 0 && y >= 0 && x < W && y < H) px.set(c, (y * W + x) * 3);
  };
  const black: RGB = [0, 0, 0], grid: RGB = [225, 225, 225], S = 2;
  const text = (t: string, x: number, y: number) =>
    drawText(t, x, y, S, (a, b) => set(a, b, black));
  // A label the font can draw: lower case, other characters as '-'.
  const drawable = (s: string) => [...s.toLowerCase()].map((c) => c in GLYPHS ? c : "-").join("");
  const curves = runs.map((r) => {
    let ema = NaN;
    return r.points.filter(([s, l]) => Number.isFinite(s) && Number.isFinite(l) && l > 0)
      .map(([s, l]) =>
        [s, ema = Number.isNaN(ema) ? l : 0.95 * ema + 0.05 * l] as [number, number]
      );
  });
  const all = curves.flat();
  const s0 = Math.min(...all.map((p) => p[0])), s1 = Math.max(s0 + 1, ...all.map((p) => p[0]));
  let lo = Math.log10(Math.min(...all.map((p) => p[1])));
  let hi = Math.log10(Math.max(...all.map((p) => p[1])));
  if (hi - lo < 0.1) [lo, hi] = [(lo + hi) / 2 - 0.05, (lo + hi) / 2 + 0.05];
  [lo, hi] = [lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo)];
  // Ticks: 1-2-5 per decade on the loss axis, a 1-2-5 step on the step axis.
  let yTicks: number[] = [];
  for (const mant of [[1, 2, 5], [1, 2, 3, 4, 5, 6, 7, 8, 9]]) {
    yTicks = [];
    for (let p = Math.floor(lo); p <= Math.ceil(hi); p++) {
      for (const m of mant) {
        const v = Number((m * 10 ** p).toPrecision(6));
        if (Math.log10(v) >= lo && Math.log10(v) <= hi) yTicks.push(v);
      }
    }
    if (yTicks.length >= 3) break;
  }
  const raw = (s1 - s0) / 6, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw)!;
  const xTicks: number[] = [];
  for (let v = Math.ceil(s0 / step) * step; v <= s1; v += step) xTicks.push(v);
  const label = (v: number) => String(Number(v.toPrecision(3)));
  const left = 16 + Math.max(...yTicks.map((v) => textWidth(label(v), S)));
  const top = 12 + GLYPH_H * S + 10, right = 24, bottom = 16 + 2 * GLYPH_H * S + 12;
  const X = (s: number) => left + (s - s0) / (s1 - s0) * (W - left - right);
  const Y = (l: number) => H - bottom - (Math.log10(l) - lo) / (hi - lo) * (H - top - bottom);
  for (const v of yTicks) {
    for (let x = left; x <= W - right; x++) set(x, Y(v), grid);
    text(label(v), left - 8 - textWidth(label(v), S), Y(v) - GLYPH_H * S / 2);
  }
  for (const v of xTicks) {
    for (let y = top; y <= H - bottom; y++) set(X(v), y, grid);
    text(label(v), X(v) - textWidth(label(v), S) / 2, H - bottom + 8);
  }
  for (let y = top; y <= H - bottom; y++) set(left, y, black);
  for (let x = left; x <= W - right; x++) set(x, H - bottom, black);
  text("step", (left + W - right - textWidth("step", S)) / 2, H - 12 - GLYPH_H * S);
  text("loss (log)", 8, 8);
  const names = runs.map((r) => drawable(r.label));
  let lx = W - right - names.reduce((a, n) => a + 40 + textWidth(n, S), 0) + 18;
  names.forEach((n, i) => {
    for (let j = 0; j < 16; j++) {
      for (let w = 0; w < 3; w++) set(lx + j, 7 + GLYPH_H + w, COLORS[i % 4]);
    }
    text(n, lx + 22, 8);
    lx += 40 + textWidth(n, S);
  });
  curves.forEach((pts, i) => {
    for (let k = 1; k < pts.length; k++) {
      const [xa, ya, xb, yb] = [X(pts[k - 1][0]), Y(pts[k - 1][1]), X(pts[k][0]), Y(pts[k][1])];
      const n = Math.max(1, Math.ceil(Math.max(Math.abs(xb - xa), Math.abs(yb - ya))));
      for (let j = 0; j <= n; j++) {
        for (let d = 0; d < 2; d++) {
          set(xa + (xb - xa) * j / n, ya + (yb - ya) * j / n + d, COLORS[i % 4]);
        }
      }
    }
  });
  return encodePng(px, W, H, 3);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { out: { type: "string", default: "loss_curves.png" }, tail: { type: "string" } },
  });
  if (positionals.length < 1) {
    console.error("usage: deno run -A scripts/loss_curves.ts RUN_DIR... [--out F.png] [--tail N]");
    Deno.exit(2);
  }
  const tail = Number(values.tail ?? 300);
  if (!Number.isInteger(tail) || tail < 1) {
    console.error(`--tail ${values.tail}: give a whole number of steps ≥ 1`);
    Deno.exit(2);
  }
  const runs: { label: string; points: Points; skipped: number }[] = [];
  for (const arg of positionals) {
    const file = arg.endsWith(".jsonl") ? arg : join(arg, "metrics.jsonl");
    let lines: string[];
    try {
      lines = (await Deno.readTextFile(file)).split("\n").filter((l) => l.trim());
    } catch (e) {
      console.error(`${file}: ${(e as Error).message}`);
      Deno.exit(1);
    }
    const rows = lines.map((l) => JSON.parse(l));
    runs.push({
      label: basename(arg.endsWith(".jsonl") ? dirname(arg) : arg),
      points: rows.map((r) => [r.step, r.loss]),
      skipped: rows.filter((r) => r.skipped).length,
    });
  }
  const tailMean = (p: Points) => {
    const t = p.slice(-tail).map(([, l]) => l).filter(Number.isFinite);
    return t.reduce((a, b) => a + b, 0) / t.length;
  };
  const base = tailMean(runs[0].points);
  console.log(`mean loss over the last ${tail} steps (difference from ${runs[0].label}):`);
  for (const r of runs) {
    const m = tailMean(r.points), d = m - base;
    console.log(
      `  ${r.label.padEnd(24)} ${m.toFixed(5)}  ${d >= 0 ? "+" : ""}${
        d.toFixed(5)
      }  (${r.points.length} ` +
        `steps to ${r.points.at(-1)?.[0]}${r.skipped ? `, ${r.skipped} skipped` : ""})`,
    );
  }
  await writeFileAtomic(values.out!, await lossCurvesPng(runs));
  console.log(`wrote ${values.out}`);
}
