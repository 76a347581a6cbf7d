/**
 * Matmul timing: the linear kernels (forward, dX, dW+db) at square and DiT-S/2 batch-128 shapes,
 * in TFLOP/s (2·M·N·K per product), optionally beside PyTorch fp32 (TF32 off) on the same card.
 *
 *   deno run -A tasks/matmul_bench.ts [--torch] [--tune] [--only=NAME,...] [--shape=M,N,K]
 *                                     [--md=FILE]
 *
 * Each case: record once, warm up, then 5 timed batches of `reps` runs (one compute pass per
 * batch, GPU timestamps when the adapter has them, else queue.onSubmittedWorkDone wall time);
 * the median is reported. A few sampled outputs are checked against float64 dot products.
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { type Dispatch, Kernels, type Tensor } from "../src/gpu/kernels.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
} from "../src/ops/linear.ts";

type Op = "fwd" | "dx" | "dw";
interface Case {
  name: string;
  op: Op;
  M: number;
  N: number;
  K: number;
  opts?: LinearOptions;
}

const args = new Set(Deno.args.filter((a) => !a.includes("=")));
const kv: Record<string, string> = Object.fromEntries(
  Deno.args.filter((a) => a.includes("=")).map((a) => a.replace(/^--/, "").split("=", 2)),
);
const only: string[] | null = kv.only ? kv.only.split(",") : null;

const T = 25088, D = 384;
const dit: [string, number, number, number][] = [
  ["qkv", T, 3 * D, D],
  ["fc1", T, 4 * D, D],
  ["fc2", T, D, 4 * D],
  ["proj", T, D, D],
  ["adaLN", 128, 6 * D, D],
];
let cases: Case[] = [
  { name: "square 4096", op: "fwd", M: 4096, N: 4096, K: 4096 },
  { name: "square 8192", op: "fwd", M: 8192, N: 8192, K: 8192 },
];
for (const [n, M, N, K] of dit) {
  for (const op of ["fwd", "dx", "dw"] as Op[]) cases.push({ name: `${n}`, op, M, N, K });
}
if (args.has("--tune")) {
  const tiles: [string, LinearOptions][] = [
    ["default", {}],
    ["128x128 bk8", { tile: { rg: 2, cg: 2, wx: 16, wy: 16, bk: 8 }, swizzle: 8 }],
    ["64x256 bk16", { tile: { rg: 2, cg: 4, wx: 16, wy: 8, bk: 16 }, swizzle: 8 }],
    ["64x256 bk8", { tile: { rg: 2, cg: 4, wx: 16, wy: 8, bk: 8 }, swizzle: 8 }],
    ["128x64 bk16", { tile: { rg: 2, cg: 2, wx: 8, wy: 16, bk: 16 } }],
  ];
  const tune: Case[] = [];
  for (const [tn, opts] of tiles) {
    tune.push({ name: `4096 ${tn}`, op: "fwd", M: 4096, N: 4096, K: 4096, opts });
    tune.push({ name: `fc2 ${tn}`, op: "fwd", M: T, N: D, K: 4 * D, opts });
    tune.push({ name: `fc1dx ${tn}`, op: "dx", M: T, N: 4 * D, K: D, opts });
  }
  for (const s of [24, 32, 48]) {
    tune.push({ name: `fc1 dW s${s}`, op: "dw", M: T, N: 4 * D, K: D, opts: { splits: s } });
  }
  for (const s of [20, 40, 64]) {
    tune.push({ name: `qkv dW s${s}`, op: "dw", M: T, N: 3 * D, K: D, opts: { splits: s } });
  }
  for (const s of [64, 98]) {
    tune.push({ name: `proj dW s${s}`, op: "dw", M: T, N: D, K: D, opts: { splits: s } });
  }
  const ada: [Op, string, number][] = [
    ["fwd", "mid", 4],
    ["fwd", "mid", 3],
    ["fwd", "small", 2],
    ["dx", "mid", 8],
    ["dx", "mid", 16],
    ["dx", "mid", 24],
    ["dx", "small", 8],
    ["dx", "big", 18],
    ["dw", "mid", 1],
    ["dw", "small", 1],
    ["dw", "big", 1],
  ];
  for (const [op, v, s] of ada) {
    tune.push({
      name: `adaLN ${v} s${s}`,
      op,
      M: 128,
      N: 6 * D,
      K: D,
      opts: { variant: v, splits: s },
    });
  }
  cases = tune;
}
if (kv.shape) {
  const [M, N, K] = kv.shape.split(",").map(Number);
  cases = (["fwd", "dx", "dw"] as Op[]).map((op) => ({ name: "custom", op, M, N, K }));
}
if (only) cases = cases.filter((c) => only.some((o) => c.name.includes(o)));

const gpu = await getGpu();
const k = new Kernels(gpu);
console.log(`# ${describeGpu(gpu)}`);
const useTimestamps = gpu.features.has("timestamp-query");

function randomTensor(shape: number[], seed: number): { t: Tensor; data: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = (s / 4294967296 - 0.5) * 2;
  }
  const t = k.tensor(shape);
  k.write(t, data);
  return { t, data };
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
    k.encode(enc, all, {
      querySet: qs,
      beginningOfPassWriteIndex: 0,
      endOfPassWriteIndex: 1,
    });
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

interface Result {
  c: Case;
  tflops: number;
  ms: number;
  err: number;
}
const results: Result[] = [];

for (const c of cases) {
  const { M, N, K, op } = c;
  const x = randomTensor([M, K], 1), w = randomTensor([N, K], 2), b = randomTensor([N], 3);
  const dy = randomTensor([M, N], 4);
  let ds: Dispatch[], out: Tensor, check: (i: number) => [number, number];
  if (op === "fwd") {
    out = k.tensor([M, N]);
    ds = linearForward(k, x.t, w.t, b.t, out, c.opts);
    check = (i) => {
      const m = Math.floor(i / N), n = i % N;
      let s = b.data[n];
      for (let j = 0; j < K; j++) s += x.data[m * K + j] * w.data[n * K + j];
      return [s, K];
    };
  } else if (op === "dx") {
    out = k.tensor([M, K]);
    ds = linearBackwardInput(k, dy.t, w.t, out, c.opts);
    check = (i) => {
      const m = Math.floor(i / K), kk = i % K;
      let s = 0;
      for (let j = 0; j < N; j++) s += dy.data[m * N + j] * w.data[j * K + kk];
      return [s, N];
    };
  } else {
    out = k.tensor([N, K]);
    ds = linearBackwardWeight(k, dy.t, x.t, out, k.tensor([N]), c.opts);
    check = (i) => {
      const n = Math.floor(i / K), kk = i % K;
      let s = 0;
      for (let j = 0; j < M; j++) s += dy.data[j * N + n] * x.data[j * K + kk];
      return [s, M];
    };
  }
  const flop = 2 * M * N * K;
  await k.run(ds); // compile + warm up
  const est = await timeBatch(ds, 1);
  const reps = Math.max(3, Math.min(400, Math.ceil(0.03 / Math.max(est, 1e-7))));
  const times: number[] = [];
  for (let i = 0; i < 5; i++) times.push(await timeBatch(ds, reps));
  times.sort((a, b) => a - b);
  const sec = times[2];
  // Spot check: the worst relative error over 16 sampled outputs (scaled by sqrt(length)).
  const got = await k.read(out);
  let err = 0;
  for (let s = 0; s < 16; s++) {
    const i = Math.floor(((s * 2654435761) >>> 0) / 4294967296 * got.length);
    const [want, len] = check(i);
    err = Math.max(err, Math.abs(got[i] - want) / Math.sqrt(len));
  }
  const r = { c, tflops: flop / sec / 1e12, ms: sec * 1e3, err };
  results.push(r);
  const v = c.opts ? ` ${JSON.stringify(c.opts)}` : "";
  console.log(
    `${c.name.padEnd(16)} ${op.padEnd(3)} ${M}x${N}x${K}`.padEnd(42) +
      `${r.ms.toFixed(4).padStart(9)} ms ${r.tflops.toFixed(2).padStart(7)} TFLOP/s` +
      `  err ${err.toExponential(1)}  [${
        ds.map((d) => `${d.label}${d.workgroups}`).join(" ")
      }]${v}`,
  );
  for (const t of [x, w, b, dy]) t.t.buffer.destroy();
  out.buffer.destroy();
}

// PyTorch fp32 (TF32 off) at the same products, same card, for comparison.
let torch: Record<string, number> = {};
if (args.has("--torch")) {
  const spec = JSON.stringify(results.map((r) => [r.c.op, r.c.M, r.c.N, r.c.K]));
  const py = `
import json, torch
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
out = {}
for op, M, N, K in json.loads('${spec}'):
    d = 'cuda'
    x = torch.randn(M, K, device=d); w = torch.randn(N, K, device=d); b = torch.randn(N, device=d)
    dy = torch.randn(M, N, device=d)
    if op == 'fwd': f = lambda: torch.addmm(b, x, w.t())
    elif op == 'dx': f = lambda: dy @ w
    else: f = lambda: (dy.t() @ x, dy.sum(0))
    for _ in range(3): f()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record(); f(); e.record(); torch.cuda.synchronize()
    reps = max(3, min(400, int(30 / max(s.elapsed_time(e), 1e-4))))
    ts = []
    for _ in range(5):
        s.record()
        for _ in range(reps): f()
        e.record(); torch.cuda.synchronize()
        ts.append(s.elapsed_time(e) / reps)
    ts.sort()
    out[f'{op} {M} {N} {K}'] = 2 * M * N * K / (ts[2] * 1e-3) / 1e12
print('TORCH' + json.dumps(out))
`;
  const p = await new Deno.Command("python3", { args: ["-c", py], stdout: "piped" }).output();
  const line = new TextDecoder().decode(p.stdout).split("\n").find((l) => l.startsWith("TORCH"));
  if (line) torch = JSON.parse(line.slice(5));
  else console.log("PyTorch run failed");
}

const md = [
  `| shape | product | M×N×K | ms | TFLOP/s | PyTorch fp32 TFLOP/s | dispatches |`,
  `| --- | --- | --- | ---: | ---: | ---: | --- |`,
];
for (const r of results) {
  const key = `${r.c.op} ${r.c.M} ${r.c.N} ${r.c.K}`;
  const tt = torch[key] !== undefined ? torch[key].toFixed(1) : "";
  const prod = { fwd: "y = x·wᵀ+b", dx: "dx = dy·w", dw: "dw = dyᵀ·x, db" }[r.c.op];
  md.push(
    `| ${r.c.name} | ${prod} | ${r.c.M}×${r.c.N}×${r.c.K} | ${r.ms.toFixed(3)} | ${
      r.tflops.toFixed(1)
    } | ${tt} | ${r.c.opts ? JSON.stringify(r.c.opts) : "default"} |`,
  );
}
console.log(md.join("\n"));
if (kv.md) await Deno.writeTextFile(kv.md, md.join("\n") + "\n");
