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
 * repeats of ≥ 50 ms each in one compute pass (GPU timestamps when the adapter has them, else
 * wall time); the median is reported. Inputs are views of one random buffer per precision (a
 * 1,000,003-value pattern repeated); 8 sampled outputs are checked against float64 dot products
 * (error relative to sqrt(Σ products²): f32 < 1e-4, f16 < 0.05, else the candidate is WRONG).
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { type Dispatch, type DType, Kernels, type Tensor } from "../src/gpu/kernels.ts";
import {
  type Choice,
  DEFAULTS,
  describePlan,
  type Gemm,
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
  type ShapeClass,
  SPLIT_LONG,
  SPLIT_SMALL,
  type Tile,
  TILES,
} from "../src/ops/linear.ts";
import { castF32ToF16 } from "../src/ops/cast.ts";
import { probeKernels } from "./matmul_probe.ts";

type Op = "fwd" | "dx" | "dw";
type Prec = "f32" | "f16";
type Epi = "gelu" | "gate" | "geluGrad";

interface Case {
  name: string;
  op: Op;
  M: number;
  N: number;
  K: number;
  /** Calls per DiT-S/2 training step (0: not a model product). */
  calls: number;
  epi?: Epi;
}

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
const T = Number(kv.tokens ?? 25088), D = Number(kv.width ?? 384), DEPTH = 12;
const SQ = Number(kv.square ?? 4096);
const layers: [string, number, number, number, number][] = [
  ["qkv", T, 3 * D, D, DEPTH],
  ["fc1", T, 4 * D, D, DEPTH],
  ["fc2", T, D, 4 * D, DEPTH],
  ["proj", T, D, D, DEPTH],
  ["adaLN", 128, 6 * D, D, DEPTH],
  ["x_embedder", T, D, 4, 1],
  ["final", T, 4, D, 1],
];
const modelCases: Case[] = [];
for (const [name, M, N, K, calls] of layers) {
  for (const op of ["fwd", "dx", "dw"] as Op[]) modelCases.push({ name, op, M, N, K, calls });
}
const square = (n: number): Case => ({ name: `${n}³`, op: "fwd", M: n, N: n, K: n, calls: 0 });

const gemmOf = (c: Case, prec: Prec): Gemm =>
  c.op === "fwd"
    ? { R: c.M, Q: c.N, L: c.K, a: "rl", b: "ql", f16: prec === "f16" }
    : c.op === "dx"
    ? { R: c.M, Q: c.K, L: c.N, a: "rl", b: "lq", f16: prec === "f16" }
    : { R: c.N, Q: c.K, L: c.M, a: "lr", b: "lq", f16: prec === "f16" };

const gpu = await getGpu();
const k = new Kernels(gpu);
console.log(`# ${describeGpu(gpu)}`);
const useTimestamps = gpu.features.has("timestamp-query");
if (precs.includes("f16") && !gpu.features.has("shader-f16")) {
  throw new Error("this adapter lacks shader-f16: run with --prec=f32");
}

// ---------------------------------------------------------------------------------------------
// Inputs: one random buffer per precision, operand 1 at element 0, operand 2 at element OFF.

const PERIOD = 1_000_003;
const pattern = new Float32Array(PERIOD);
{
  let s = 12345;
  for (let i = 0; i < PERIOD; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pattern[i] = (s / 4294967296 - 0.5) * 2;
  }
}
const pattern16 = Float32Array.from(new Float16Array(pattern));

const sweepMode = flags.has("--sweep");
let cases: Case[] = sweepMode ? [square(SQ), ...modelCases] : [
  square(SQ),
  square(2 * SQ),
  ...modelCases,
  { name: "fc1 +gelu", op: "fwd", M: T, N: 4 * D, K: D, calls: 0, epi: "gelu" },
  { name: "fc2 +gate+res", op: "fwd", M: T, N: D, K: 4 * D, calls: 0, epi: "gate" },
  { name: "fc2 dX +gelu'", op: "dx", M: T, N: D, K: 4 * D, calls: 0, epi: "geluGrad" },
];
if (kv.shape && !sweepMode) {
  const [M, N, K] = kv.shape.split(",").map(Number);
  cases = (["fwd", "dx", "dw"] as Op[]).map((op) => ({ name: "custom", op, M, N, K, calls: 0 }));
}
if (only) cases = cases.filter((c) => only.some((o) => c.name.includes(o)));
if (cases.length === 0) throw new Error("no products left to time (check --only)");
const maxOperand = Math.max(
  ...cases.map((c) => Math.max(c.M * c.K, c.N * c.K, c.M * c.N, 128 * 6 * c.N)),
);
const OFF = Math.ceil(maxOperand / 128) * 128;
const rnd: Record<Prec, Tensor | null> = { f32: null, f16: null };
function randomBuffer(prec: Prec): Tensor {
  if (rnd[prec]) return rnd[prec]!;
  if (!rnd.f32) {
    const t = k.tensor([2 * OFF], "random f32");
    for (let at = 0; at < 2 * OFF; at += PERIOD) {
      k.write(t, pattern.subarray(0, Math.min(PERIOD, 2 * OFF - at)), at);
    }
    rnd.f32 = t;
  }
  if (prec === "f16") {
    const t = k.tensor([2 * OFF], "random f16", "f16");
    k.submit(castF32ToF16(k, rnd.f32, t));
    rnd.f16 = t;
  }
  return rnd[prec]!;
}
const view = (prec: Prec, at: number, shape: number[]): Tensor => {
  const base = randomBuffer(prec);
  const length = shape.reduce((a, b) => a * b, 1);
  return { ...base, offset: at * (prec === "f16" ? 2 : 4), length, shape };
};
const valueAt = (prec: Prec, i: number) => (prec === "f16" ? pattern16 : pattern)[i % PERIOD];

// ---------------------------------------------------------------------------------------------
// One product: record, check, time.

interface Recorded {
  ds: Dispatch[];
  out: Tensor;
  owned: Tensor[];
  /** [want, sqrt(Σ products²)] of output element i. */
  ref: (i: number) => [number, number];
}

function record(c: Case, prec: Prec, opts: LinearOptions): Recorded {
  const { M, N, K } = c;
  const h: DType | undefined = prec === "f16" ? "f16" : undefined;
  const owned: Tensor[] = [];
  const own = (shape: number[], dt?: DType) => {
    const t = k.tensor(shape, "bench", dt);
    owned.push(t);
    return t;
  };
  const dot = (n: number, a: (j: number) => number, b: (j: number) => number) => {
    let s = 0, q = 0;
    for (let j = 0; j < n; j++) {
      const p = valueAt(prec, a(j)) * valueAt(prec, b(j));
      s += p;
      q += p * p;
    }
    return [s, Math.sqrt(q)] as [number, number];
  };
  if (c.op === "fwd") {
    const x = view(prec, 0, [M, K]), w = view(prec, OFF, [N, K]), b = view(prec, 0, [N]);
    const out = own([M, N], h);
    const o: LinearOptions = { ...opts };
    if (c.epi === "gelu") o.gelu = true;
    if (c.epi === "gelu") o.pre = own([M, N], h);
    if (c.epi === "gate") {
      o.gate = { mod: view(prec, 0, [128, 6 * N]), chunk: 5 };
      o.residual = view(prec, OFF, [M, N]);
      o.pre = own([M, N], h);
    }
    const ref = (i: number): [number, number] => {
      const m = Math.floor(i / N), n = i % N;
      const [s, q] = dot(K, (j) => m * K + j, (j) => OFF + n * K + j);
      return [s + valueAt(prec, n), q];
    };
    return { ds: linearForward(k, x, w, b, out, o), out: o.pre ?? out, owned, ref };
  }
  if (c.op === "dx") {
    const dy = view(prec, 0, [M, N]), w = view(prec, OFF, [N, K]);
    const out = own([M, K], h);
    const o: LinearOptions = { ...opts };
    if (c.epi === "geluGrad") o.geluGrad = view(prec, OFF, [M, K]);
    const ref = (i: number): [number, number] => {
      const m = Math.floor(i / K), kk = i % K;
      const [s, q] = dot(N, (j) => m * N + j, (j) => OFF + j * K + kk);
      if (!c.epi) return [s, q];
      // gelu'(h) at h = the value at OFF + i (same expression as the kernel, in f64).
      const v = valueAt(prec, OFF + i), C = Math.sqrt(2 / Math.PI);
      const th = Math.tanh(C * (v + 0.044715 * v ** 3));
      const g = 0.5 * (1 + th) + 0.5 * v * (1 - th * th) * C * (1 + 3 * 0.044715 * v * v);
      return [s * g, q];
    };
    return { ds: linearBackwardInput(k, dy, w, out, o), out, owned, ref };
  }
  const dy = view(prec, 0, [M, N]), x = view(prec, OFF, [M, K]);
  const out = own([N, K]), db = own([N]);
  const ref = (i: number): [number, number] => {
    const n = Math.floor(i / K), kk = i % K;
    return dot(M, (j) => j * N + n, (j) => OFF + j * K + kk);
  };
  return { ds: linearBackwardWeight(k, dy, x, out, db, opts), out, owned, ref };
}

async function timeBatch(ds: Dispatch[], reps: number): Promise<number> {
  const all: Dispatch[] = [];
  for (let i = 0; i < reps; i++) all.push(...ds);
  if (useTimestamps) {
    const qs = k.device.createQuerySet({ type: "timestamp", count: 2 });
    const res = k.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.QUERY_RESOLVE | GPUBufferUsage.COPY_SRC,
    });
    const rd = k.device.createBuffer({
      size: 16,
      usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
    });
    const enc = k.device.createCommandEncoder();
    k.encode(enc, all, { querySet: qs, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 });
    enc.resolveQuerySet(qs, 0, 2, res, 0);
    enc.copyBufferToBuffer(res, 0, rd, 0, 16);
    k.device.queue.submit([enc.finish()]);
    await rd.mapAsync(GPUMapMode.READ);
    const [t0, t1] = new BigUint64Array(rd.getMappedRange());
    const ns = Number(t1 - t0);
    rd.unmap();
    qs.destroy();
    res.destroy();
    rd.destroy();
    return ns / 1e9 / reps;
  }
  const t0 = performance.now();
  k.submit(all);
  await k.device.queue.onSubmittedWorkDone();
  return (performance.now() - t0) / 1e3 / reps;
}

/** Batch length of one timing (seconds); --batch-ms overrides. */
const BATCH_S = Number(kv["batch-ms"] ?? 30) / 1e3;

/** Seconds per run of `ds` (already warm): one estimate, then the median of 3 batches. */
async function medianTime(ds: Dispatch[]): Promise<number> {
  const est = await timeBatch(ds, 1);
  const reps = Math.max(2, Math.min(5000, Math.ceil(BATCH_S / Math.max(est, 1e-7))));
  const times: number[] = [];
  for (let i = 0; i < 3; i++) times.push(await timeBatch(ds, reps));
  times.sort((a, b) => a - b);
  return times[1];
}

/** A few elements of a tensor (one 4-byte word copied per element; f16 halves picked out). */
async function readSamples(t: Tensor, idx: number[]): Promise<number[]> {
  const eb = t.dtype === "f16" ? 2 : 4;
  const staging = k.device.createBuffer({
    size: 4 * idx.length,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const enc = k.device.createCommandEncoder();
  idx.forEach((i, s) => {
    const byte = t.offset + i * eb;
    enc.copyBufferToBuffer(t.buffer, byte - (byte % 4), staging, 4 * s, 4);
  });
  k.device.queue.submit([enc.finish()]);
  await staging.mapAsync(GPUMapMode.READ);
  const bytes = staging.getMappedRange().slice(0);
  staging.unmap();
  staging.destroy();
  return idx.map((i, s) => {
    if (eb === 4) return new Float32Array(bytes, 4 * s, 1)[0];
    return new Float16Array(bytes, 4 * s, 2)[((t.offset + i * 2) % 4) / 2];
  });
}

interface Timing {
  ms: number;
  tflops: number;
  err: number;
  wrong: boolean;
  compileMs: number;
  dispatches: string;
}

/** Time one product with one set of options; a string says why it could not run. */
async function measure(c: Case, prec: Prec, opts: LinearOptions): Promise<Timing | string> {
  const t0 = performance.now();
  let r: Recorded;
  try {
    r = record(c, prec, opts);
    await k.run(r.ds); // compile + warm up
  } catch (e) {
    return `n/a (${(e as Error).message.split("\n")[0].slice(0, 120)})`;
  }
  const compileMs = performance.now() - t0;
  try {
    const sec = await medianTime(r.ds);
    const idx = Array.from(
      { length: 8 },
      (_, s) => Math.floor(((s * 2654435761 + 12345) >>> 0) / 4294967296 * r.out.length),
    );
    const got = await readSamples(r.out, idx);
    let err = 0;
    idx.forEach((i, s) => {
      const [want, scale] = r.ref(i);
      err = Math.max(err, Math.abs(got[s] - want) / Math.max(scale, 1e-30));
    });
    if (Number.isNaN(err)) err = Infinity;
    const wrong = !(err < (prec === "f16" ? 0.05 : 1e-4));
    return {
      ms: sec * 1e3,
      tflops: 2 * c.M * c.N * c.K / sec / 1e12,
      err,
      wrong,
      compileMs,
      dispatches: r.ds.map((d) => `${d.label}[${d.workgroups}]`).join(" "),
    };
  } finally {
    for (const t of r.owned) t.buffer.destroy();
  }
}

const opName = { fwd: "y = x·wᵀ+b", dx: "dx = dy·w", dw: "dw = dyᵀ·x, db" };
const dimStr = (c: Case) => `${c.M}×${c.N}×${c.K}`;
const fmtChoice = (ch: Choice) =>
  JSON.stringify(ch).replace(/"(\w+)":/g, "$1: ").replace(/,/g, ", ");

// ---------------------------------------------------------------------------------------------
// Default mode: the default kernels, optionally beside PyTorch.

async function standard() {
  const rows: { c: Case; prec: Prec; t: Timing | string }[] = [];
  for (const c of cases) {
    for (const prec of precs) {
      const t = await measure(c, prec, {});
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
  const torch = flags.has("--torch") ? await torchTimes(cases) : {};
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

// ---------------------------------------------------------------------------------------------
// --sweep: candidate tilings per shape class and precision.

/**
 * Candidates of a class, in priority order (the class default first). Run 1 on the H200 kept:
 * f32 flat arrays and the 128×128 16x8-a-thread BK 8 tile; f16 BK 16 (BK 32 lost everywhere).
 * New here: the f16 swap form (no splat), chunks of 32-64 products, 16-byte f16 workgroup loads
 * (h8), f32 sums in workgroup memory (wacc) with 16x8 outputs a thread.
 */
function candidates(cls: ShapeClass, prec: Prec): [string, Choice][] {
  const big = TILES.big, wide = TILES.wide, small = TILES.small, mid = TILES.mid;
  const t = (x: Tile): Choice => ({ tile: x });
  const def = DEFAULTS[prec][cls];
  const list: [string, Choice][] = [["default", def]];
  const large = cls === "fwd" || cls === "dx" || cls === "dw";
  // 128×128 block, 16x8 outputs a thread; 128×64 with 16x8 over 64 threads.
  const sq8: Tile = { rg: 4, cg: 2, wx: 16, wy: 8, bk: 8 };
  const t64: Tile = { rg: 4, cg: 2, wx: 8, wy: 8, bk: 8 };
  const swap: Tile = { ...big, form: "swap" };
  const swap64: Tile = { ...t64, bk: 16, form: "swap", wacc: true, h8: true, chunk: 32 };
  if (prec === "f32" && large) {
    if (cls !== "dx") {
      list.push(
        ["128² 16x8 bk8 flat", t({ ...sq8, flat: true })],
        ["128² 16x8 bk8 flat blocks", t({ ...sq8, flat: true, blocks: true })],
        ["big flat blocks", t({ ...big, flat: true, blocks: true })],
        ["128² 16x8 bk8 sep", t({ ...sq8, sep: true })],
        ["128² 16x8 bk8 sep blocks", t({ ...sq8, sep: true, blocks: true })],
        ["big sep blocks", t({ ...big, sep: true, blocks: true })],
        ["128² 16x8 bk8", t(sq8)],
        ["128x64 64t 16x8 bk8 flat", t({ ...t64, flat: true })],
        ["128² 16x8 bk16 flat", t({ ...sq8, bk: 16, flat: true })],
      );
    } else {
      list.push(
        ["128² 16x8 bk8 flat", t({ ...sq8, flat: true })],
        ["128² 16x8 bk8 flat blocks", t({ ...sq8, flat: true, blocks: true })],
        ["wide flat blocks", t({ ...wide, flat: true, blocks: true })],
        ["128² 16x8 bk8 sep blocks", t({ ...sq8, sep: true, blocks: true })],
        ["wide sep blocks", t({ ...wide, sep: true, blocks: true })],
        ["128² 16x8 bk8", t(sq8)],
        ["wide wtx8 flat", t({ ...wide, wtx: 8, flat: true })],
        ["128x64 64t 16x8 bk8 flat", t({ ...t64, flat: true })],
      );
    }
  } else if (prec === "f16" && large) {
    list.push(
      ["swap bk16", t(swap)],
      ["swap blocks", t({ ...swap, blocks: true })],
      ["swap sep blocks", t({ ...swap, sep: true, blocks: true })],
      ["swap flat blocks", t({ ...swap, flat: true, blocks: true })],
      ["splat bk16", t(big)],
      ["pair bk16", t({ ...big, form: "pair" })],
      ["swap h8", t({ ...swap, h8: true })],
      ["swap c32", t({ ...swap, chunk: 32 })],
      ["swap blocks h8 c32", t({ ...swap, blocks: true, h8: true, chunk: 32 })],
      ["swap flat", t({ ...swap, flat: true })],
      ["swap wacc c32", t({ ...swap, wacc: true, chunk: 32 })],
      ["swap 128x64 64t 16x8 wacc h8 c32", t(swap64)],
      ["splat flat", t({ ...big, flat: true })],
      ["swap sep blocks h8 c32", t({ ...swap, sep: true, blocks: true, h8: true, chunk: 32 })],
    );
    if (cls === "fwd") list.push(["swap c64", t({ ...swap, chunk: 64 })]);
  } else if (cls === "splitk") {
    const s = (x: Tile, target = SPLIT_LONG.target): Choice => ({
      tile: x,
      split: { ...SPLIT_LONG, target },
    });
    if (prec === "f32") {
      list.push(
        ["128² 256t flat", s({ rg: 2, cg: 2, wx: 16, wy: 16, bk: 8, flat: true })],
        ["128² 16x8 bk8 flat", s({ ...sq8, flat: true })],
        ["big sep", s({ ...big, sep: true })],
        ["128² 16x8 bk8 sep", s({ ...sq8, sep: true })],
        ["big flat ×2112", s({ ...big, flat: true }, 2112)],
        ["128x64 64t 16x8 bk8 flat", s({ ...t64, flat: true })],
      );
    } else {
      list.push(
        ["splat flat", s({ ...big, flat: true })],
        ["swap bk16", s(swap)],
        ["swap sep", s({ ...swap, sep: true })],
        ["swap flat", s({ ...swap, flat: true })],
        ["swap c32", s({ ...swap, chunk: 32 })],
        ["swap h8", s({ ...swap, h8: true })],
        ["swap wacc c32", s({ ...swap, wacc: true, chunk: 32 })],
        ["swap 128x64 64t 16x8 wacc h8 c32", s(swap64)],
        ["pair bk16", s({ ...big, form: "pair" })],
      );
    }
  } else if (cls === "small") {
    const s = (x: Tile, target: number): Choice => ({ tile: x, split: { ...SPLIT_SMALL, target } });
    list.push(
      ["×768", s(small, 768)],
      ["mid bk16 ×768", s({ ...mid, bk: 16 }, 768)],
      ["mid ×384", s(mid, 384)],
    );
    if (prec === "f16") list.push(["swap ×768", s({ ...small, form: "swap" }, 768)]);
  } else if (cls === "narrowQ" || cls === "narrowR") {
    const s = (x: Tile): Choice => ({ tile: x, split: SPLIT_SMALL });
    const q = cls === "narrowQ";
    list.push(
      ["flat", s({ ...def.tile, flat: true })],
      [
        q ? "4x256 64t" : "256x4 64t",
        s(q ? { rg: 1, cg: 1, wx: 1, wy: 64, bk: 16 } : { rg: 1, cg: 1, wx: 64, wy: 1, bk: 16 }),
      ],
    );
  } else if (cls === "thin") {
    list.push(["big bk4", t({ ...big, bk: 4 })], ["mid bk4", t({ ...mid, bk: 4 })]);
  }
  return list;
}

const optsOf = (ch: Choice): LinearOptions => ({
  tile: ch.tile,
  split: ch.split,
  splits: ch.split ? undefined : 1,
  swizzle: ch.swizzle,
});

interface Row {
  c: Case;
  prec: Prec;
  cls: ShapeClass;
  cands: [string, Choice][];
  /** Per candidate label: a timing, a reason it did not run, or "skipped". */
  res: Map<string, Timing | string>;
}

async function sweep() {
  const budget = Number(kv.budget ?? 210) * 1e3;
  // Largest share of the step first, so a short budget still covers what matters.
  const order = [...cases].sort((a, b) => b.calls * b.M * b.N * b.K - a.calls * a.M * a.N * a.K);
  const start = performance.now();
  randomBuffer("f32");
  if (precs.includes("f16")) randomBuffer("f16");
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
        same ? row.res.get(same)! : await measure(c, prec, label === "default" ? {} : optsOf(ch)),
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
  report(rows, elapsed);
}

function ok(t: Timing | string | undefined): t is Timing {
  return typeof t === "object" && !t.wrong;
}

function report(rows: Row[], elapsed: number) {
  const md: string[] = [
    `# Linear sweep on ${gpu.name} (${elapsed.toFixed(0)} s)`,
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

// ---------------------------------------------------------------------------------------------
// --probe: FMA, conversion and workgroup-load ceilings, and GEMM inner loops without their
// global traffic or without the f16 flush (tasks/matmul_probe.ts has the kernels).

async function probe() {
  const sms = Number(kv.sms ?? 132), ghz = Number(kv.ghz ?? 1.98);
  const perClk = (perSec: number) => perSec / (sms * ghz * 1e9);
  const io = k.tensor([128 * 4], "probe io");
  k.write(io, Float32Array.from({ length: 512 }, (_, i) => [0.75, 1, 0.5, 0.25][i % 4]));
  const md: string[] = [
    `# Matmul probes on ${gpu.name}`,
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
      sec = await medianTime([d]);
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
  const fc1 = modelCases.find((c) => c.name === "fc1" && c.op === "fwd")!;
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
      const t = await measure(fc1, prec, { tile: { ...tile, computeOnly }, splits: 1 });
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

if (flags.has("--probe")) await probe();
else if (sweepMode) await sweep();
else await standard();
