/**
 * Several training runs' loss curves on one plot, and how far apart they end: for the f16 vs
 * f32 convergence proof (BENCHMARKS.md, "Mixed precision").
 *
 *   deno run -A scripts/loss_curves.ts runs/conv-f32-s0 runs/conv-f16-s0 runs/conv-f32-s1 \
 *     --out loss_f16_vs_f32.png
 *
 * Each argument is a run directory (its metrics.jsonl) or a metrics.jsonl file; the label is the
 * run's folder name. Drawn: each run's smoothed loss (`loss_smooth`, EMA 0.95 as the training
 * progress line) on a log axis. Printed: each run's final smoothed loss and its mean loss over the
 * last `--tail` steps (default 300), with their differences from the first run: for the proof,
 * |f16 − f32| against the seed-to-seed |f32 seed 1 − f32 seed 0|.
 */
import { basename, dirname } from "node:path";
import { parseArgs } from "node:util";
import { linePlotPng } from "../src/io/plot.ts";
import { writeFileAtomic } from "../src/io/atomic_write.ts";

interface Row {
  step: number;
  loss: number;
  loss_smooth: number;
}

/** Runs' curves (label, (step, loss) points) on one log-loss plot: PNG bytes. */
export function lossCurvesPng(runs: { label: string; points: [number, number][] }[]) {
  return linePlotPng(
    runs.map(({ label, points }) => ({ name: label, points })),
    {
      width: 900,
      height: 480,
      xLabel: "step",
      yLabel: "smoothed loss",
      logY: true,
      markers: false,
    },
  );
}

async function main() {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { out: { type: "string", default: "loss_curves.png" }, tail: { type: "string" } },
  });
  const tail = Number(values.tail ?? 300);
  if (!positionals.length || !Number.isInteger(tail) || tail < 1) {
    console.error("usage: deno run -A scripts/loss_curves.ts RUN... [--out F.png] [--tail N ≥ 1]");
    Deno.exit(2);
  }
  const runs = await Promise.all(positionals.map(async (arg) => {
    const file = arg.endsWith(".jsonl") ? arg : `${arg}/metrics.jsonl`;
    const rows: Row[] = (await Deno.readTextFile(file)).split("\n").filter((l) => l.trim())
      .map((l) => JSON.parse(l));
    const label = basename(arg.endsWith(".jsonl") ? dirname(arg) : arg);
    return { label, rows };
  }));
  const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
  const stats = runs.map(({ label, rows }) => ({
    label,
    final: rows[rows.length - 1].loss_smooth,
    tail: mean(rows.slice(-tail).map((r) => r.loss)),
  }));
  const pct = (v: number, b: number) => `${v >= b ? "+" : ""}${(100 * (v - b) / b).toFixed(2)}%`;
  console.log(`run              final smoothed loss        mean of the last ${tail} steps`);
  for (const s of stats) {
    console.log(
      `${s.label.padEnd(16)} ${s.final.toFixed(5)} (${pct(s.final, stats[0].final)})` +
        `        ${s.tail.toFixed(5)} (${pct(s.tail, stats[0].tail)})`,
    );
  }
  const png = await lossCurvesPng(runs.map(({ label, rows }) => ({
    label,
    points: rows.map((r) => [r.step, r.loss_smooth] as [number, number]),
  })));
  await writeFileAtomic(values.out!, png);
  console.log(`wrote ${values.out}`);
}

if (import.meta.main) await main();
