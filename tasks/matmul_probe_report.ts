/**
 * tasks/matmul_bench.ts --probe (about 30 s): the probe kernels of matmul_probe.ts (FMA
 * throughput, the f16 → f32 flush, workgroup loads) per SM per clock, and GEMM kernels at fc1's
 * forward whole and as their inner loop alone (Tile.computeOnly), as Markdown tables.
 */
import type { Tile } from "../src/ops/linear.ts";
import { TILES } from "../src/ops/linear.ts";
import { dimStr, type Prec } from "./matmul_cases.ts";
import type { MatmulRun } from "./matmul_measure.ts";
import { probeKernels } from "./matmul_probe.ts";

export async function probe(run: MatmulRun): Promise<void> {
  const { k, kv, precs, products } = run;
  const sms = Number(kv.sms ?? 132), ghz = Number(kv.ghz ?? 1.98);
  const perClk = (perSec: number) => perSec / (sms * ghz * 1e9);
  const io = k.tensor([128 * 4], "probe io");
  k.write(io, Float32Array.from({ length: 512 }, (_, i) => [0.75, 1, 0.5, 0.25][i % 4]));
  const md: string[] = [
    `# Matmul probes on ${run.gpuName}`,
    "",
    `Per SM per clock figures assume ${sms} SMs at ${ghz} GHz (--sms, --ghz). FMA: flops count ` +
    "2 per lane; an H100/H200 SM peaks at 256 f32 or 512 packed-f16 flops a clock.",
  ];
  const sections: Record<string, string[]> = {
    fma: [
      "## FMA throughput",
      "",
      "| probe | ms | TFLOP/s | flops/clk/SM |",
      "| --- | ---: | ---: | ---: |",
    ],
    cvt: [
      "## f16 → f32 flush (same FMAs as the f16 vec4 ×16 probe, plus the flushes)",
      "",
      "| probe | ms | TFLOP/s of the FMAs | conversions (+ f32 adds)/clk/SM |",
      "| --- | ---: | ---: | ---: |",
    ],
    lds: [
      "## Workgroup loads in the GEMM's pattern (2 FMAs per 4 loads, a barrier per 16 steps)",
      "",
      "| probe | ms | G thread loads/s | thread loads/clk/SM | bytes/clk/SM (broadcasts counted per thread) |",
      "| --- | ---: | ---: | ---: | ---: |",
    ],
  };
  let cvtFma = 0; // ms of the f16 vec4 ×16 FMA probe, for the conversion cost
  const wgs = kv["probe-wg"] ? Number(kv["probe-wg"]) : undefined;
  for (const pk of probeKernels(wgs)) {
    if (pk.name.startsWith("f16") && !precs.includes("f16")) continue;
    let sec: number;
    try {
      const d = k.dispatch(pk.code, "main", [io], [pk.workgroups, 1, 1]);
      await k.run([d]);
      sec = await products.medianTime([d]);
    } catch (e) {
      sections[pk.group].push(`| ${pk.name} | failed: ${(e as Error).message.split("\n")[0]} |`);
      continue;
    }
    const total = pk.work * pk.threads * pk.workgroups, rate = total / sec, ms = sec * 1e3;
    let row: string;
    if (pk.group === "fma") {
      if (pk.name === "f16 vec4, 16 accumulators") cvtFma = ms;
      row = `| ${pk.name} | ${ms.toFixed(3)} | ${(rate / 1e12).toFixed(1)} | ${
        perClk(rate).toFixed(0)
      } |`;
    } else if (pk.unit === "cvt") {
      // Conversion-bound: conversions per second over the time beyond the FMAs alone.
      const extra = Math.max(sec - cvtFma / 1e3, 1e-9);
      row = `| ${pk.name} | ${ms.toFixed(3)} | – | ${perClk(total / extra).toFixed(1)} (over the ` +
        `FMA-only time; ${perClk(rate).toFixed(1)} overall) |`;
    } else if (pk.group === "cvt") {
      row = `| ${pk.name} | ${ms.toFixed(3)} | ${(rate / 1e12).toFixed(1)} | – |`;
    } else {
      row = `| ${pk.name} | ${ms.toFixed(3)} | ${(rate / 1e9).toFixed(0)} | ${
        perClk(rate).toFixed(1)
      } | ${perClk(rate * (pk.bytes ?? 0)).toFixed(0)} |`;
    }
    sections[pk.group].push(row);
    console.log(row);
  }
  md.push("", ...sections.fma, "", ...sections.cvt, "", ...sections.lds);
  // GEMM inner loops at fc1's forward: the whole kernel, and the loop over the first tile only
  // (no global loads, no workgroup stores; barriers kept), f16 with and without its flushes.
  const fc1 = run.model.find((c) => c.name === "fc1" && c.op === "fwd")!;
  const big = TILES.big, b128: Tile = { rg: 4, cg: 2, wx: 16, wy: 8, bk: 8 };
  const swap: Tile = { ...big, form: "swap" };
  const gemms: [Prec, string, Tile][] = [
    ["f32", "big (128×64, 8×8 a thread, BK 16), flat", { ...big, flat: true }],
    ["f32", "big, 3D arrays", big],
    ["f32", "big, 3D, one variable per buffer (sep)", { ...big, sep: true }],
    ["f32", "big flat, 4x4-block loads", { ...big, flat: true, blocks: true }],
    ["f32", "128² 16x8 bk8, flat", { ...b128, flat: true }],
    ["f16", "splat bk16 (chunk 16)", big],
    ["f16", "splat bk16, no flush (chunk 0)", { ...big, chunk: 0 }],
    ["f16", "pair bk16", { ...big, form: "pair" }],
    ["f16", "pair bk16, no flush", { ...big, form: "pair", chunk: 0 }],
    ["f16", "swap bk16", swap],
    ["f16", "swap bk16, no flush", { ...swap, chunk: 0 }],
    ["f16", "swap bk16, chunk 64", { ...swap, chunk: 64 }],
    ["f16", "swap bk16, flat", { ...swap, flat: true }],
    ["f16", "swap bk16, sep", { ...swap, sep: true }],
    ["f16", "swap bk16, h8 (16-byte workgroup loads)", { ...swap, h8: true }],
    ["f16", "swap bk16, 4x4-block loads", { ...swap, blocks: true }],
    ["f16", "swap bk16, wacc chunk 32", { ...swap, wacc: true, chunk: 32 }],
    ["f16", "swap 128² 16x8 bk8 chunk 32, flat", { ...b128, form: "swap", chunk: 32, flat: true }],
  ];
  md.push(
    "",
    `## GEMM at ${fc1.name} ${fc1.op} (${dimStr(fc1)}): whole kernel and compute-only loop`,
    "",
    "Compute-only: the first tile loaded, then the inner loop and barriers over it for every " +
      "tile (no global loads, no workgroup stores); its results are wrong by design.",
    "",
    "| prec | tiling | TFLOP/s | compute-only TFLOP/s |",
    "| --- | --- | ---: | ---: |",
  );
  for (const [prec, label, tile] of gemms) {
    if (!precs.includes(prec)) continue;
    const cells: string[] = [];
    for (const computeOnly of [false, true]) {
      const t = await products.measure(fc1, prec, { tile: { ...tile, computeOnly }, splits: 1 });
      cells.push(
        typeof t === "string"
          ? t.slice(0, 60)
          : `${t.tflops.toFixed(1)}${t.wrong && !computeOnly ? " (WRONG)" : ""}`,
      );
    }
    const row = `| ${prec} | ${label} | ${cells.join(" | ")} |`;
    md.push(row);
    console.log(row);
  }
  const text = md.join("\n");
  console.log("\n" + text);
  if (kv.md) Deno.writeTextFileSync(kv.md, text + "\n");
}
