/**
 * Matmul timing: the linear kernels (forward, dX, dW+db) at square and DiT-S/2 batch-128 shapes,
 * in TFLOP/s (2·M·N·K per product), f32 and f16, optionally beside PyTorch on the same card.
 *
 *   deno run -A tasks/matmul_bench.ts [--prec=f32,f16] [--torch] [--only=NAME,...]
 *                                     [--shape=M,N,K] [--md=FILE]
 *   deno run -A tasks/matmul_bench.ts --sweep [--budget=SECONDS] [--prec=f32,f16]
 *                                     [--only=NAME,...] [--md=FILE] [--json=FILE]
 *   deno run -A tasks/matmul_bench.ts --probe [--prec=f32,f16] [--md=FILE] [--sms=132 --ghz=1.98]
 *   (smoke test on a CPU adapter: --tokens=256 --width=32 --square=64 --batch-ms=5, for the
 *   sweep --class=NAME to time one class's candidates at every product, for the probe
 *   --probe-wg=1)
 *
 * Default mode: the default kernels (src/ops/linear.ts DEFAULTS) at 4096³, 8192³ and every
 * DiT-S/2 product, plus the fused epilogues (fc1+gelu, fc2+gate+residual, fc2 dX+gelu'); with
 * --torch, PyTorch fp32 (TF32 off) and bf16 matmuls at the same products.
 *
 * --sweep: every candidate tiling of a shape class (the class DEFAULTS uses) timed at 4096³ and at
 * every DiT-S/2 product, f32 and f16; prints per class a table (TFLOP/s, candidates as columns),
 * the best candidate per shape, the best per class by Σ calls·ms over the model's products (with
 * the DEFAULTS line to paste) and the GEMM time of a training step with the defaults versus the
 * picks. The budget (default 210 s) is shared out over the shapes in proportion to their
 * candidates; candidates are timed in priority order and the rest skipped (and listed) when a
 * shape's share runs out.
 *
 * --probe (about 30 s): FMA throughput (f32/f16 vectors, splat and permuted forms), the f16 → f32
 * flush's cost, workgroup-load throughput (f32 vs f16, 3D vs flat arrays, 16-byte f16 loads) and
 * GEMM kernels at fc1's forward whole and as their inner loop alone (Tile.computeOnly), f16 with
 * and without flushes (tasks/matmul_probe.ts).
 *
 * Timing: record once, run once (compile, warm-up), one estimate, then 3 batches of back-to-back
 * repeats of ≥ 30 ms each (--batch-ms) in one compute pass (GPU timestamps when the adapter has them, else
 * wall time); the median is reported. Inputs are views of one random buffer per precision (a
 * 1,000,003-value pattern repeated); 8 sampled outputs are checked against float64 dot products
 * (error relative to sqrt(Σ products²): f32 < 1e-4, f16 < 0.05, else the candidate is WRONG).
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { Kernels } from "../src/gpu/kernels.ts";
import { benchCases, modelCases, type Prec } from "./matmul_cases.ts";
import { Products } from "./matmul_measure.ts";
import { standard } from "./matmul_standard.ts";
import { sweep } from "./matmul_sweep.ts";
import { probe } from "./matmul_probe_report.ts";

const flags = new Set(Deno.args.filter((a) => !a.includes("=")));
const kv: Record<string, string> = Object.fromEntries(
  Deno.args.filter((a) => a.includes("=")).map((a) => a.replace(/^--/, "").split("=", 2)),
);
const only: string[] | null = kv.only ? kv.only.split(",") : null;
const precs = (kv.prec ?? "f32,f16").split(",") as Prec[];
for (const p of precs) {
  if (p !== "f32" && p !== "f16") throw new Error(`--prec: f32 or f16, not ${p}`);
}

// DiT-S/2 at batch 128 on 28×28×1: T = 25088 tokens, D = 384, depth 12 (--tokens, --width and
// --square shrink everything for a smoke test on a software adapter).
const T = Number(kv.tokens ?? 25088), D = Number(kv.width ?? 384);
const SQ = Number(kv.square ?? 4096);

const gpu = await getGpu();
const k = new Kernels(gpu);
console.log(`# ${describeGpu(gpu)}`);
if (precs.includes("f16") && !gpu.features.has("shader-f16")) {
  throw new Error("this adapter lacks shader-f16: run with --prec=f32");
}

const sweepMode = flags.has("--sweep");
const cases = benchCases(T, D, SQ, sweepMode, kv.shape, only);
/** Batch length of one timing (ms); --batch-ms overrides. */
const batchMs = Number(kv["batch-ms"] ?? 30);
const run = {
  k,
  gpuName: gpu.name,
  kv,
  flags,
  precs,
  cases,
  model: modelCases(T, D),
  products: new Products(k, cases, batchMs),
};

if (flags.has("--probe")) await probe(run);
else if (sweepMode) await sweep(run);
else await standard(run);
