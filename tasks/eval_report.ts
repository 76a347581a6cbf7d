/**
 * `deno task eval`'s results as text, plot and JSON: the scores of one setting beside the floor's,
 * or one row per setting of a sweep and FD against NFE per solver; the JSON line with every
 * figure (scores rounded to 6 significant digits).
 */
import { linePlotPng, type Scores } from "../mod.ts";
import type { Setting, Values } from "./eval_options.ts";

/** A setting's scores, NFE per image and sampling seconds. */
export interface Result extends Setting {
  nfe: number;
  seconds: number;
  scores: Scores;
}

export function fmtTime(s: number): string {
  const m = Math.floor(s / 60), sec = Math.round(s % 60);
  return m > 0 ? `${m}m${String(sec).padStart(2, "0")}s` : `${s.toFixed(1)}s`;
}

export const pct = (v: number | undefined) => v === undefined ? "-" : `${(100 * v).toFixed(2)}%`;
export const num = (v: number, d = 3) => v.toFixed(d);

/** Rows of cells → aligned text (first column left, others right). */
function table(rows: string[][]): string {
  const w = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((s, c) => c === 0 ? s.padEnd(w[c]) : s.padStart(w[c])).join("  "))
    .join("\n");
}

function rounded(s: Scores) {
  const r = (v: number) => Number(v.toPrecision(6));
  return {
    n: s.n,
    fd: r(s.fd),
    ...(s.accuracy !== undefined ? { accuracy: r(s.accuracy) } : {}),
    precision: r(s.precision),
    recall: r(s.recall),
  };
}

/** One setting's scores of N samples beside the floor's, a row per metric (K: classes). */
export function scoresTable(r: Result, N: number, floor: Scores | undefined, K: number): string {
  const head = ["", `samples (${N})`, ...(floor ? [`floor (${floor.n} real)`] : [])];
  const row = (name: string, f: (s: Scores) => string) => [
    name,
    f(r.scores),
    ...(floor ? [f(floor)] : []),
  ];
  const rows = [head, row("FD", (s) => num(s.fd))];
  if (K > 0) rows.push(row("class accuracy", (s) => pct(s.accuracy)));
  rows.push(row("precision (k=3)", (s) => num(s.precision)));
  rows.push(row("recall (k=3)", (s) => num(s.recall)));
  return table(rows);
}

/** A sweep's settings (and the floor) as rows, the metrics and sampling time as columns. */
export function sweepTable(results: Result[], floor: Scores | undefined, K: number): string {
  const rows = [[
    "solver",
    "steps",
    "CFG",
    "NFE",
    "FD",
    "accuracy",
    "precision",
    "recall",
    "time",
  ]];
  const cells = (s: Scores) => [
    num(s.fd),
    pct(s.accuracy),
    num(s.precision),
    num(s.recall),
  ];
  for (const r of results) {
    rows.push([
      r.solver,
      r.solver === "dopri5" ? "-" : String(r.steps),
      K > 0 ? String(r.cfg) : "-",
      num(r.nfe, 1),
      ...cells(r.scores),
      fmtTime(r.seconds),
    ]);
  }
  if (floor) rows.push(["floor (real)", "-", "-", "-", ...cells(floor), "-"]);
  return table(rows);
}

/** PNG of FD against NFE, a line per solver (and CFG scale, when several were swept). */
export function sweepPlot(results: Result[], N: number, K: number): Promise<Uint8Array> {
  const series = new Map<string, [number, number][]>();
  const manyCfg = K > 0 && new Set(results.map((x) => x.cfg)).size > 1;
  for (const r of results) {
    const key = r.solver + (manyCfg ? ` CFG ${r.cfg}` : "");
    if (!series.has(key)) series.set(key, []);
    series.get(key)!.push([r.nfe, r.scores.fd]);
  }
  for (const pts of series.values()) pts.sort((a, b) => a[0] - b[0]);
  return linePlotPng(
    [...series.entries()].map(([name, points]) => ({ name, points })),
    {
      xLabel: "NFE",
      yLabel: `FD, ${N} samples${K > 0 ? "" : ", unconditional"}`,
      logX: true,
    },
  );
}

/** What the JSON line reports besides the results. */
export interface RunInfo {
  o: Values;
  /** "ema" or "raw". */
  weights: string;
  N: number;
  K: number;
  /** Test images of the reference statistics; the classifier's own test accuracy. */
  refN: number;
  accuracy: number | undefined;
  sweep: boolean;
  floor: Scores | undefined;
  /** Seconds of the whole evaluation. */
  total: number;
}

/** The JSON result: the run, one setting's (or every swept setting's) scores, the floor's. */
export function resultJson(info: RunInfo, results: Result[]): Record<string, unknown> {
  const { o, K, floor } = info;
  const setting = (r: Result) => ({
    solver: r.solver,
    ...(r.solver === "dopri5" ? {} : { steps: r.steps }),
    ...(K > 0 ? { cfg_scale: r.cfg } : {}),
    nfe: r.nfe,
    sampling_s: Number(r.seconds.toFixed(2)),
    ...rounded(r.scores),
  });
  return {
    checkpoint: o.checkpoint,
    weights: info.weights,
    num_samples: info.N,
    shift: o.shift,
    seed: o.seed,
    reference: { n: info.refN, set: "fashion-mnist test" },
    classifier: { name: o.classifier, test_accuracy: info.accuracy },
    ...(info.sweep ? { sweep: results.map(setting) } : setting(results[0])),
    ...(floor ? { floor: rounded(floor) } : {}),
    total_s: Number(info.total.toFixed(2)),
  };
}
