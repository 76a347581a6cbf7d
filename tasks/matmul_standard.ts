/**
 * tasks/matmul_bench.ts's default mode: the default kernels (src/ops/linear.ts DEFAULTS) at every
 * product, a line each and a Markdown table, optionally beside PyTorch on the same card.
 */
import { type Case, dimStr, opName, type Prec } from "./matmul_cases.ts";
import type { MatmulRun, Timing } from "./matmul_measure.ts";

export async function standard(run: MatmulRun): Promise<void> {
  const { cases, precs, products, kv } = run;
  const rows: { c: Case; prec: Prec; t: Timing | string }[] = [];
  for (const c of cases) {
    for (const prec of precs) {
      const t = await products.measure(c, prec, {});
      rows.push({ c, prec, t });
      const head = `${c.name.padEnd(14)} ${c.op.padEnd(3)} ${prec} ${dimStr(c)}`.padEnd(44);
      console.log(
        typeof t === "string"
          ? `${head} ${t}`
          : `${head}${t.ms.toFixed(4).padStart(9)} ms ${
            t.tflops.toFixed(2).padStart(7)
          } TFLOP/s  err ${t.err.toExponential(1)}${t.wrong ? " WRONG" : ""}  ${t.dispatches}`,
      );
    }
  }
  const torch = run.flags.has("--torch") ? await torchTimes(cases) : {};
  const key = (c: Case) => `${c.op} ${c.M} ${c.N} ${c.K}`;
  const md = [
    `| shape | product | M×N×K | ${precs.map((p) => `${p} ms | ${p} TFLOP/s`).join(" | ")} | ` +
    `PyTorch fp32 TFLOP/s | PyTorch bf16 TFLOP/s |`,
    `| --- | --- | --- | ${precs.map(() => "---: | ---:").join(" | ")} | ---: | ---: |`,
  ];
  for (const c of cases) {
    const cells = precs.map((p) => {
      const t = rows.find((r) => r.c === c && r.prec === p)?.t;
      return typeof t === "object" ? `${t.ms.toFixed(3)} | **${t.tflops.toFixed(1)}**` : "– | –";
    });
    const tt = torch[key(c)];
    md.push(
      `| ${c.name} | ${opName[c.op]}${c.epi ? ` (+${c.epi})` : ""} | ${dimStr(c)} | ${
        cells.join(" | ")
      } | ${tt && !c.epi ? tt[0].toFixed(1) : ""} | ${tt && !c.epi ? tt[1].toFixed(1) : ""} |`,
    );
  }
  console.log(md.join("\n"));
  if (kv.md) await Deno.writeTextFile(kv.md, md.join("\n") + "\n");
}

/** PyTorch fp32 (TF32 off) and bf16 TFLOP/s at the same products, same card. */
async function torchTimes(cases: Case[]): Promise<Record<string, [number, number]>> {
  const spec = JSON.stringify(cases.filter((c) => !c.epi).map((c) => [c.op, c.M, c.N, c.K]));
  const py = `
import json, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
out = {}
for op, M, N, K in json.loads('${spec}'):
    res = []
    for dt in (torch.float32, torch.bfloat16):
        d = 'cuda'
        x = torch.randn(M, K, device=d, dtype=dt); w = torch.randn(N, K, device=d, dtype=dt)
        b = torch.randn(N, device=d, dtype=dt); dy = torch.randn(M, N, device=d, dtype=dt)
        if op == 'fwd': f = lambda: torch.addmm(b, x, w.t())
        elif op == 'dx': f = lambda: dy @ w
        else: f = lambda: (dy.t() @ x, dy.sum(0))
        for _ in range(3): f()
        torch.cuda.synchronize()
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record(); f(); e.record(); torch.cuda.synchronize()
        reps = max(3, min(2000, int(50 / max(s.elapsed_time(e), 1e-4))))
        ts = []
        for _ in range(3):
            s.record()
            for _ in range(reps): f()
            e.record(); torch.cuda.synchronize()
            ts.append(s.elapsed_time(e) / reps)
        ts.sort()
        res.append(2 * M * N * K / (ts[1] * 1e-3) / 1e12)
    out[f'{op} {M} {N} {K}'] = res
print('TORCH' + json.dumps(out))
`;
  const p = await new Deno.Command("python3", { args: ["-c", py], stdout: "piped" }).output();
  const line = new TextDecoder().decode(p.stdout).split("\n").find((l) => l.startsWith("TORCH"));
  if (!line) {
    console.log("PyTorch run failed");
    return {};
  }
  return JSON.parse(line.slice(5));
}
