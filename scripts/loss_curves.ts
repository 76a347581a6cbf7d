/**
 * Several training runs' loss curves on one plot, and how far apart they end: for the f16 vs
 * f32 convergence proof (docs: BENCHMARKS.md, "Mixed precision").
 *
 *   deno run -A scripts/loss_curves.ts runs/conv-f32-s0 runs/conv-f16-s0 runs/conv-f32-s1 \
 *     --out loss_f16_vs_f32.png
 *
 * Each argument is a run directory (its metrics.jsonl) or a metrics.jsonl file; the label is the
 * folder's name. Printed: each run's mean loss over the last `--tail` steps (default 300), and
 * each run's difference from the first, which for the proof reads: |f16 − f32| against the
 * seed-to-seed |f32 seed 1 − f32 seed 0|.
 */
import { basename, dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { lossCurvesPng, writeFileAtomic } from "../mod.ts";
import { GLYPHS } from "../src/io/bitmap_font.ts";

/** A legend label the plot font can draw: lower case, other characters as '-'. */
const drawable = (s: string) => [...s.toLowerCase()].map((c) => (c in GLYPHS ? c : "-")).join("");

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

const runs: { label: string; points: [number, number][]; skipped: number }[] = [];
for (const arg of positionals) {
  const file = arg.endsWith(".jsonl") ? arg : join(arg, "metrics.jsonl");
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    console.error(`${file}: ${(e as Error).message}`);
    Deno.exit(1);
  }
  const points: [number, number][] = [];
  let skipped = 0;
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    const r = JSON.parse(line);
    points.push([r.step, r.loss]);
    if (r.skipped) skipped++;
  }
  runs.push({ label: basename(arg.endsWith(".jsonl") ? dirname(arg) : arg), points, skipped });
}

const tailMean = (p: [number, number][]) => {
  const t = p.slice(-tail).map(([, l]) => l).filter(Number.isFinite);
  return t.reduce((a, b) => a + b, 0) / t.length;
};
const base = tailMean(runs[0].points);
console.log(`mean loss over the last ${tail} steps (difference from ${runs[0].label}):`);
for (const r of runs) {
  const m = tailMean(r.points);
  const last = r.points.at(-1)?.[0];
  console.log(
    `  ${r.label.padEnd(24)} ${m.toFixed(5)}  ${
      (m - base >= 0 ? "+" : "") + (m - base).toFixed(5)
    }` +
      `  (${r.points.length} steps to ${last}${r.skipped ? `, ${r.skipped} skipped` : ""})`,
  );
}
const png = await lossCurvesPng(runs.map((r) => ({ ...r, label: drawable(r.label) })));
await writeFileAtomic(values.out!, png);
console.log(`wrote ${values.out}`);
