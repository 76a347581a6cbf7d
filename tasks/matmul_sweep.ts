/**
 * tasks/matmul_bench.ts --sweep: every candidate tiling of a product's shape class
 * (matmul_candidates.ts), timed within a budget shared out over the products; then per class a
 * Markdown table, the best candidate per product, the class pick by Σ calls·ms over the model's
 * products with the DEFAULTS lines to paste, and the GEMM time of a training step.
 */
import { type Choice, describePlan, type ShapeClass } from "../src/ops/linear.ts";
import { type Case, dimStr, gemmOf, type Prec } from "./matmul_cases.ts";
import { candidates, optsOf } from "./matmul_candidates.ts";
import type { MatmulRun, Timing } from "./matmul_measure.ts";

const fmtChoice = (ch: Choice) =>
  JSON.stringify(ch).replace(/"(\w+)":/g, "$1: ").replace(/,/g, ", ");

interface Row {
  c: Case;
  prec: Prec;
  cls: ShapeClass;
  cands: [string, Choice][];
  /** Per candidate label: a timing, a reason it did not run, or "skipped". */
  res: Map<string, Timing | string>;
}

export async function sweep(run: MatmulRun): Promise<void> {
  const { k, kv, cases, precs, products } = run;
  const budget = Number(kv.budget ?? 210) * 1e3;
  // Largest share of the step first, so a short budget still covers what matters.
  const order = [...cases].sort((a, b) => b.calls * b.M * b.N * b.K - a.calls * a.M * a.N * a.K);
  const start = performance.now();
  products.randomBuffer("f32");
  if (precs.includes("f16")) products.randomBuffer("f16");
  await k.device.queue.onSubmittedWorkDone();
  console.log(`# inputs ready in ${((performance.now() - start) / 1e3).toFixed(1)} s`);
  const rows: Row[] = [];
  const classOf = (c: Case, prec: Prec) =>
    (kv.class as ShapeClass | undefined) ?? describePlan(k, gemmOf(c, prec)).cls;
  const jobs = order.flatMap((c) =>
    precs.map((prec) => ({ c, prec, count: candidates(classOf(c, prec), prec).length }))
  );
  for (let j = 0; j < jobs.length; j++) {
    const { c, prec } = jobs[j];
    const g = gemmOf(c, prec);
    const cls = classOf(c, prec);
    const cands = candidates(cls, prec);
    const row: Row = { c, prec, cls, cands, res: new Map() };
    rows.push(row);
    const t0 = performance.now();
    // This job's share of what is left, in proportion to its candidates.
    const left = jobs.slice(j).reduce((n, o) => n + o.count, 0);
    const share = (budget - (t0 - start)) * cands.length / left;
    const seen = new Map<string, string>();
    for (const [label, ch] of cands) {
      if (label !== "default" && performance.now() - t0 > share) {
        row.res.set(label, "skipped");
        continue;
      }
      // Candidates that plan to the same kernel as an earlier one are not timed twice.
      let same: string | undefined;
      try {
        const key = JSON.stringify(describePlan(k, g, optsOf(ch)));
        same = seen.get(key);
        if (!same) seen.set(key, label);
      } catch (e) {
        row.res.set(label, `n/a (${(e as Error).message.slice(0, 80)})`);
        continue;
      }
      row.res.set(
        label,
        same
          ? row.res.get(same)!
          : await products.measure(c, prec, label === "default" ? {} : optsOf(ch)),
      );
    }
    const line = [...row.res].map(([l, t]) =>
      typeof t === "string"
        ? `${l} ${t.startsWith("skip") ? "skip" : t}`
        : `${l} ${t.tflops.toFixed(1)}${t.wrong ? "!WRONG" : ""}`
    ).join(" | ");
    console.log(
      `${c.name} ${c.op} ${prec} ${dimStr(c)} [${cls}] (${
        ((performance.now() - t0) / 1e3).toFixed(1)
      } s): ${line}`,
    );
  }
  const elapsed = (performance.now() - start) / 1e3;
  report(run, rows, elapsed);
}

function ok(t: Timing | string | undefined): t is Timing {
  return typeof t === "object" && !t.wrong;
}

function report(run: MatmulRun, rows: Row[], elapsed: number) {
  const { kv, precs } = run;
  const md: string[] = [
    `# Linear sweep on ${run.gpuName} (${elapsed.toFixed(0)} s)`,
    "",
    "TFLOP/s per candidate (columns) and product (rows); calls = per DiT-S/2 training step; " +
    "skip = out of budget, n/a = does not fit the device, ! = wrong result.",
  ];
  const picks: Record<string, string[]> = { f32: [], f16: [] };
  const stepMs: Record<string, { def: number; cls: number; best: number }> = {};
  for (const prec of precs) {
    stepMs[prec] = { def: 0, cls: 0, best: 0 };
    const classes = [...new Set(rows.filter((r) => r.prec === prec).map((r) => r.cls))];
    for (const cls of classes) {
      const rs = rows.filter((r) => r.prec === prec && r.cls === cls);
      const labels = rs[0].cands.map(([l]) => l);
      md.push("", `## ${prec} ${cls}`, "");
      md.push(
        `| product | M×N×K | calls | ${labels.map((l, i) => `${i}: ${l}`).join(" | ")} | best |`,
      );
      md.push(`| --- | --- | ---: | ${labels.map(() => "---:").join(" | ")} | --- |`);
      for (const r of rs) {
        const cells = labels.map((l) => {
          const t = r.res.get(l);
          return typeof t === "object"
            ? `${t.tflops.toFixed(1)}${t.wrong ? "!" : ""}`
            : t?.startsWith("skip")
            ? "skip"
            : "n/a";
        });
        const best = labels.filter((l) =>
          ok(r.res.get(l))
        ).sort((a, b) => (r.res.get(a) as Timing).ms - (r.res.get(b) as Timing).ms)[0];
        const d = r.res.get("default");
        const gain = best && ok(d)
          ? ` (${((d.ms / (r.res.get(best) as Timing).ms - 1) * 100).toFixed(0)}% over default)`
          : "";
        md.push(
          `| ${r.c.name} ${r.c.op} | ${dimStr(r.c)} | ${r.c.calls} | ${cells.join(" | ")} | ${
            best ?? "–"
          }${gain} |`,
        );
        if (r.c.calls && best && ok(d)) {
          stepMs[prec].def += r.c.calls * d.ms;
          stepMs[prec].best += r.c.calls * (r.res.get(best) as Timing).ms;
        }
      }
      // Class pick: least Σ calls·ms over the model's products, among candidates timed on all.
      const model = rs.filter((r) => r.c.calls > 0);
      const pool = model.length ? model : rs;
      const total = (l: string) =>
        pool.every((r) => ok(r.res.get(l)))
          ? pool.reduce((s, r) => s + (r.c.calls || 1) * (r.res.get(l) as Timing).ms, 0)
          : Infinity;
      const pick = labels.filter((l) => total(l) < Infinity).sort((a, b) => total(a) - total(b))[0];
      if (!pick) {
        md.push("", `No candidate ran on every ${cls} product.`);
        continue;
      }
      if (model.length) stepMs[prec].cls += total(pick);
      const choice = rs[0].cands.find(([l]) => l === pick)![1];
      md.push(
        "",
        `Pick for ${cls}: **${pick}**, Σ calls·ms ${total(pick).toFixed(3)} (default ${
          total("default").toFixed(3)
        }${model.length ? "" : "; no model product, by the square shape"}).`,
      );
      picks[prec].push(`    ${cls}: ${fmtChoice(choice)},`);
    }
  }
  md.push("", "## GEMM time of one DiT-S/2 step (Σ calls·ms over the 21 model products)", "");
  for (const prec of precs) {
    const s = stepMs[prec];
    md.push(
      `- ${prec}: defaults ${s.def.toFixed(2)} ms, class picks ${s.cls.toFixed(2)} ms, ` +
        `best per product ${s.best.toFixed(2)} ms`,
    );
  }
  md.push(
    "",
    "## DEFAULTS (paste over src/ops/linear.ts DEFAULTS; classes not listed keep their entry)",
    "",
    "```ts",
    ...precs.flatMap((p) => [`  ${p}: {`, ...picks[p], "  },"]),
    "```",
  );
  const text = md.join("\n");
  console.log("\n" + text);
  if (kv.md) Deno.writeTextFileSync(kv.md, text + "\n");
  if (kv.json) {
    Deno.writeTextFileSync(
      kv.json,
      JSON.stringify(
        rows.map((r) => ({
          name: r.c.name,
          op: r.c.op,
          M: r.c.M,
          N: r.c.N,
          K: r.c.K,
          calls: r.c.calls,
          prec: r.prec,
          cls: r.cls,
          results: Object.fromEntries([...r.res].map(([l, t]) => [l, {
            choice: r.cands.find(([x]) => x === l)![1],
            ...(typeof t === "string" ? { status: t } : t),
          }])),
        })),
        null,
        1,
      ),
    );
  }
}
