/**
 * Attention timing at the DiT shapes (batch 128, dh = 64): DiT-S/2 28×28 (T = 196, 6 heads) and
 * DiT-B/2 32×32 (T = 256, 12 heads).
 *
 *   deno run -A tasks/attention_bench.ts [--shapes=S,B] [--no-sweep] [--ms=50]
 *
 * After 0.5 s of warm-up work (an idle GPU starts at low clocks):
 * (1) Per shape: the previous kernels (one thread per row, backward in three dispatches; kept in
 *     this file only for the comparison) against the current defaults in f32, f16 with f16 dout,
 *     and f16 with f32 dout; plus the largest difference of the current outputs from the
 *     previous ones (f32) and of f16 from f32, over the first two images.
 * (2) Sweep of tile settings per kernel and precision at both shapes (register-blocked and
 *     row-wise, prefetch on/off, f16 chunk), the best f32/f16 totals against the previous
 *     kernels, then the `ATTENTION_DEFAULTS` (src/ops/attention.ts) the measurements suggest,
 *     ready to paste. The sweep stops adding cases after 105 s (the whole run stays under 2 min).
 * Each figure: the dispatches encoded back to back in one compute pass for >= 50 ms (sweep: 30),
 * GPU timestamps (else wall clock up to onSubmittedWorkDone), median of 3 such batches, per call.
 * TFLOP/s counts 4·B·H·T²·dh for the forward and 10·B·H·T²·dh for the backward (FlashAttention's
 * convention: five T×T×dh products, P recomputed not counted).
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { type Dispatch, f32, Kernels, specialise, type Tensor } from "../src/gpu/kernels.ts";
import {
  attentionAuxShape,
  attentionBackward,
  attentionForward,
  attentionLayout,
  type AttentionOptions,
  type AttentionTiles,
} from "../src/ops/attention.ts";

const kv: Record<string, string> = Object.fromEntries(
  Deno.args.filter((a) => a.includes("=")).map((a) => a.replace(/^--/, "").split("=", 2)),
);
const noSweep = Deno.args.includes("--no-sweep");
const minMs = Number(kv.ms ?? 50);
const sweepMs = Math.min(minMs, 30); // shorter batches in the sweep (many cases, 2-minute budget)
const SHAPES: Record<string, { name: string; B: number; T: number; H: number; dh: number }> = {
  S: { name: "DiT-S/2 28x28", B: 128, T: 196, H: 6, dh: 64 },
  B: { name: "DiT-B/2 32x32", B: 128, T: 256, H: 12, dh: 64 },
  t: { name: "smoke (CPU)", B: 2, T: 37, H: 2, dh: 16 }, // --shapes=t --ms=5 on a CPU adapter
};
const shapes = (kv.shapes ?? "S,B").split(",").map((s) => {
  if (!SHAPES[s]) throw new Error(`--shapes: unknown shape ${s} (S, B or t)`);
  return s;
});
const start = performance.now();
const BUDGET_S = 105; // the sweep stops adding cases past this, to end within 2 minutes

const gpu = await getGpu();
const k = new Kernels(gpu);
const hasF16 = gpu.features.has("shader-f16");
const stamps = gpu.features.has("timestamp-query");
const wgLimit = k.device.limits.maxComputeWorkgroupStorageSize;
console.log(
  `# ${describeGpu(gpu)}; workgroup memory ${wgLimit} B; shader-f16 ${hasF16}; ` +
    `${stamps ? "timestamp queries" : "wall clock"}`,
);

// ---- timing ----------------------------------------------------------------------------------

async function timeBatch(ds: Dispatch[], reps: number): Promise<number> {
  const all = Array.from({ length: reps }, () => ds).flat();
  if (!stamps) {
    const t0 = performance.now();
    k.submit(all);
    await k.device.queue.onSubmittedWorkDone();
    return (performance.now() - t0) / reps;
  }
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
  const ms = Number(t1 - t0) / 1e6 / reps;
  rd.unmap();
  for (const b of [res, rd]) b.destroy();
  qs.destroy();
  return ms;
}

/** Milliseconds per call of `ds` (median of 3 batches of >= `ms` each). */
async function time(ds: Dispatch[], ms = minMs): Promise<number> {
  await k.run(ds); // compile, warm up, surface errors
  const est = await timeBatch(ds, 1);
  const reps = Math.max(2, Math.min(2000, Math.ceil(ms / Math.max(est, 1e-4))));
  const t: number[] = [];
  for (let i = 0; i < 3; i++) t.push(await timeBatch(ds, reps));
  return t.sort((a, b) => a - b)[1];
}

/**
 * Keep the GPU busy for >= 0.5 s before the first timing: an idle GPU starts at low clocks,
 * which inflated the first measured figures of a run.
 */
async function warmUp(b: Bufs, H: number) {
  const ds = [
    ...attentionForward(k, b.qkv, b.out, b.aux, H),
    ...attentionBackward(k, b.qkv, b.out, b.aux, b.dout, b.dqkv, H),
  ];
  const t0 = performance.now();
  let reps = 1;
  while (performance.now() - t0 < 500) {
    await timeBatch(ds, reps);
    reps = Math.min(reps * 2, 64);
  }
}

// ---- the previous kernels (commit 8d2f19a), for the comparison only ----------------------------

// The previous shaders/attention.wgsl (template body; `// unroll` lines and `sum$` as expanded
// by unrollDh below).
const OLD_WGSL = `struct P {
  T: u32,
  H: u32,
  D4: u32,    // D / 4
  nblk: u32,  // blocks of BQ rows per (b, h)
  total: u32, // workgroups: B·H·nblk
  BHT: u32,   // B·H·T: offset of aux[1]
  qs: f32,    // log2(e) / sqrt(dh)
  scale: f32, // 1 / sqrt(dh)
}

const DH4: u32 = {{DH4}}u; // dh / 4
const BQ: u32 = {{BQ}}u;   // rows (threads) per workgroup
const BK: u32 = {{BK}}u;   // rows per tile in workgroup memory
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
const NEG: f32 = -3.0e38;

@group(0) @binding(0) var<storage, read> qkv: array<vec4f>;
// attn_fwd: out. Backward: dqkv.
@group(0) @binding(1) var<storage, read_write> o_rw: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> aux: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
@group(0) @binding(4) var<storage, read> dout: array<vec4f>;
// attn_bwd_dq only: the forward's out.
@group(0) @binding(5) var<storage, read> outr: array<vec4f>;

var<workgroup> ta: array<array<vec4f, DH4>, BK>; // K tile (fwd, dq) or Q tile (dk, dv)
var<workgroup> tb: array<array<vec4f, DH4>, BK>; // V tile (fwd, dq) or dO tile (dk, dv)
var<workgroup> tl: array<f32, BK>;         // base-2 logsumexp of the Q tile's rows (dk, dv)
var<workgroup> td: array<f32, BK>;         // aux[1] of the Q tile's rows (dk)

struct Blk { bh: u32, b: u32, h: u32, row: u32 }

fn block(wid: vec3u, nw: vec3u, lid: u32) -> Blk {
  let w = wid.x + wid.y * nw.x;
  let bh = w / p.nblk;
  return Blk(bh, bh / p.H, bh % p.H, (w % p.nblk) * BQ + lid);
}

fn in_grid(wid: vec3u, nw: vec3u) -> bool { return wid.x + wid.y * nw.x < p.total; }

// Load K and V rows k0.. of (b, h) into ta / tb (rows past T are not loaded nor read).
fn load_kv(b: u32, h: u32, k0: u32, nk: u32, lid: u32) {
  let rs = 3u * p.D4;
  let base = b * p.T * rs + p.D4 + h * DH4;
  for (var e = lid; e < nk * DH4; e += BQ) {
    let g = base + (k0 + e / DH4) * rs + e % DH4;
    ta[e / DH4][e % DH4] = qkv[g];
    tb[e / DH4][e % DH4] = qkv[g + p.D4];
  }
}

// Load Q and dO rows q0.. of (b, h) into ta / tb, and their logsumexp (base 2) into tl.
fn load_qdo(b: u32, h: u32, q0: u32, nq: u32, lid: u32) {
  let rs = 3u * p.D4;
  let qbase = b * p.T * rs + h * DH4;
  let obase = b * p.T * p.D4 + h * DH4;
  for (var e = lid; e < nq * DH4; e += BQ) {
    let r = q0 + e / DH4;
    let c = e % DH4;
    ta[e / DH4][c] = qkv[qbase + r * rs + c];
    tb[e / DH4][c] = dout[obase + r * p.D4 + c];
  }
  let lb = (b * p.H + h) * p.T + q0;
  for (var e = lid; e < nq; e += BQ) { tl[e] = aux[lb + e] * LOG2E; }
}

@compute @workgroup_size(BQ)
fn attn_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  if (!in_grid(wid, nw)) { return; }
  let k = block(wid, nw, lid);
  let T = p.T;
  let i = min(k.row, T - 1u);
  let qb = (k.b * T + i) * 3u * p.D4 + k.h * DH4;
  let q$ = qkv[qb + $u] * p.qs; // unroll
  var a$ = vec4f(0.0); // unroll
  var m = NEG;
  var l = 0.0;
  for (var k0 = 0u; k0 < T; k0 += BK) {
    let nk = min(BK, T - k0);
    workgroupBarrier();
    load_kv(k.b, k.h, k0, nk, lid);
    workgroupBarrier();
    for (var r = 0u; r < nk; r++) {
      let s = sum$(dot(q$, ta[r][$u]));
      if (s > m) { // rescale only when the running max grows
        let alpha = exp2(m - s);
        l *= alpha;
        a$ *= alpha; // unroll
        m = s;
      }
      let pr = exp2(s - m);
      l += pr;
      a$ += pr * tb[r][$u]; // unroll
    }
  }
  if (k.row < T) {
    let inv = 1.0 / l;
    let ob = (k.b * T + k.row) * p.D4 + k.h * DH4;
    o_rw[ob + $u] = a$ * inv; // unroll
    aux[k.bh * T + k.row] = (m + log2(l)) * LN2;
  }
}

// dq_i = scale·Σ_j P_ij (dO_i·v_j − D_i) k_j, D_i = dO_i·O_i (stored in aux[1] for attn_bwd_dk).
@compute @workgroup_size(BQ)
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  if (!in_grid(wid, nw)) { return; }
  let k = block(wid, nw, lid);
  let T = p.T;
  let i = min(k.row, T - 1u);
  let qb = (k.b * T + i) * 3u * p.D4 + k.h * DH4;
  let ob = (k.b * T + i) * p.D4 + k.h * DH4;
  let q$ = qkv[qb + $u] * p.qs; // unroll
  let g$ = dout[ob + $u]; // unroll
  let di = sum$(dot(g$, outr[ob + $u]));
  let lse = aux[k.bh * T + i] * LOG2E;
  var dq$ = vec4f(0.0); // unroll
  for (var k0 = 0u; k0 < T; k0 += BK) {
    let nk = min(BK, T - k0);
    workgroupBarrier();
    load_kv(k.b, k.h, k0, nk, lid);
    workgroupBarrier();
    for (var r = 0u; r < nk; r++) {
      let pr = exp2(sum$(dot(q$, ta[r][$u])) - lse);
      let ds = pr * (sum$(dot(g$, tb[r][$u])) - di);
      dq$ += ds * ta[r][$u]; // unroll
    }
  }
  if (k.row < T) {
    aux[p.BHT + k.bh * T + k.row] = di;
    o_rw[qb + $u] = dq$ * p.scale; // unroll
  }
}

// dk_j = scale·Σ_i P_ij (dO_i·v_j − D_i) q_i.
@compute @workgroup_size(BQ)
fn attn_bwd_dk(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  if (!in_grid(wid, nw)) { return; }
  let k = block(wid, nw, lid);
  let T = p.T;
  let j = min(k.row, T - 1u);
  let kb0 = (k.b * T + j) * 3u * p.D4 + p.D4 + k.h * DH4;
  let k$ = qkv[kb0 + $u] * p.qs; // unroll
  let v$ = qkv[kb0 + p.D4 + $u]; // unroll
  var dk$ = vec4f(0.0); // unroll
  let db = p.BHT + k.bh * T;
  for (var q0 = 0u; q0 < T; q0 += BK) {
    let nq = min(BK, T - q0);
    workgroupBarrier();
    load_qdo(k.b, k.h, q0, nq, lid);
    for (var e = lid; e < nq; e += BQ) { td[e] = aux[db + q0 + e]; }
    workgroupBarrier();
    for (var r = 0u; r < nq; r++) {
      let pr = exp2(sum$(dot(k$, ta[r][$u])) - tl[r]);
      let ds = pr * (sum$(dot(v$, tb[r][$u])) - td[r]);
      dk$ += ds * ta[r][$u]; // unroll
    }
  }
  if (k.row < T) {
    o_rw[kb0 + $u] = dk$ * p.scale; // unroll
  }
}

// dv_j = Σ_i P_ij dO_i.
@compute @workgroup_size(BQ)
fn attn_bwd_dv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  if (!in_grid(wid, nw)) { return; }
  let k = block(wid, nw, lid);
  let T = p.T;
  let j = min(k.row, T - 1u);
  let kb0 = (k.b * T + j) * 3u * p.D4 + p.D4 + k.h * DH4;
  let k$ = qkv[kb0 + $u] * p.qs; // unroll
  var dv$ = vec4f(0.0); // unroll
  for (var q0 = 0u; q0 < T; q0 += BK) {
    let nq = min(BK, T - q0);
    workgroupBarrier();
    load_qdo(k.b, k.h, q0, nq, lid);
    workgroupBarrier();
    for (var r = 0u; r < nq; r++) {
      let pr = exp2(sum$(dot(k$, ta[r][$u])) - tl[r]);
      dv$ += pr * tb[r][$u]; // unroll
    }
  }
  if (k.row < T) {
    o_rw[kb0 + p.D4 + $u] = dv$; // unroll
  }
}
`;

function unrollDh(src: string, n: number): string {
  const idx = Array.from({ length: n }, (_, j) => j);
  const lines = src.split("\n").flatMap((line) => {
    const m = line.match(/^(.*?)\s*\/\/ unroll$/);
    return m ? idx.map((j) => m[1].replaceAll("$", String(j))) : [line];
  });
  let out = lines.join("\n");
  for (let at = out.indexOf("sum$("); at >= 0; at = out.indexOf("sum$(")) {
    let depth = 0, end = at + 4;
    for (; end < out.length; end++) {
      if (out[end] === "(") depth++;
      else if (out[end] === ")" && --depth === 0) break;
    }
    const expr = out.slice(at + 5, end);
    const tree = (terms: string[]): string =>
      terms.length === 1
        ? terms[0]
        : `(${tree(terms.slice(0, terms.length >> 1))} + ${tree(terms.slice(terms.length >> 1))})`;
    out = out.slice(0, at) + tree(idx.map((j) => expr.replaceAll("$", String(j)))) +
      out.slice(end + 1);
  }
  return out;
}

/** The previous forward and three-dispatch backward, with their defaults (64 rows, 8 KB tiles). */
function oldAttention(
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  dout: Tensor,
  dqkv: Tensor,
  B: number,
  T: number,
  H: number,
  dh: number,
) {
  const bq = 64, bk = Math.max(1, Math.min(64, Math.floor(Math.min(wgLimit, 16384) / 16 / dh)));
  const code = specialise(unrollDh(OLD_WGSL, dh / 4), { DH4: dh / 4, BQ: bq, BK: bk });
  const nblk = Math.ceil(T / bq), total = B * H * nblk;
  const u = k.uniform([
    T,
    H,
    (H * dh) / 4,
    nblk,
    total,
    B * H * T,
    f32(Math.LOG2E / Math.sqrt(dh)),
    f32(1 / Math.sqrt(dh)),
  ]);
  return {
    fwd: [k.dispatch(code, "attn_fwd", [qkv, out, aux, u], total)],
    bwd: [
      k.dispatch(code, "attn_bwd_dq", [qkv, dqkv, aux, u, dout, out], total),
      k.dispatch(code, "attn_bwd_dk", [qkv, dqkv, aux, u, dout], total),
      k.dispatch(code, "attn_bwd_dv", [qkv, dqkv, aux, u, dout], total),
    ],
  };
}

// ---- data ------------------------------------------------------------------------------------

function random(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = (s / 4294967296 - 0.5) * 3.4; // variance ~1, like layer-normed activations
  }
  return a;
}

function tensor(shape: number[], data: Float32Array | null, f16 = false): Tensor {
  const t = k.tensor(shape, "bench", f16 ? "f16" : undefined);
  if (data) k.write(t, data);
  return t;
}

/**
 * max |a − b| / max |b| over the first n elements of two tensors, or over the columns [c0, c1) of
 * rows of `cols[0]` elements when `cols` is given.
 */
async function diff(a: Tensor, b: Tensor, n: number, cols?: [number, number, number]) {
  const view = (t: Tensor) => ({ ...t, length: n, shape: [n] });
  const [x, y] = [await k.read(view(a)), await k.read(view(b))];
  let e = 0, m = 0;
  for (let i = 0; i < n; i++) {
    const c = cols ? i % cols[0] : 0;
    if (cols && (c < cols[1] || c >= cols[2])) continue;
    e = Math.max(e, Math.abs(x[i] - y[i]));
    m = Math.max(m, Math.abs(y[i]));
  }
  return Number.isFinite(e) ? e / m : Infinity;
}

// ---- (1) previous vs current -----------------------------------------------------------------

interface Bufs {
  qkv: Tensor;
  out: Tensor;
  aux: Tensor;
  dout: Tensor;
  dqkv: Tensor;
}
const made: Record<string, Record<string, Bufs>> = {};
const oldSums = { fwd: 0, bwd: 0 }; // the previous kernels, summed over the shapes
const fmt = (v: number, d = 3) => v.toFixed(d).padStart(8);
const pad = (s: string, n: number) => s.padEnd(n);
const flops = (s: { B: number; T: number; H: number; dh: number }) => s.B * s.H * s.T * s.T * s.dh;

console.log(
  `\n${pad("shape", 14)} ${pad("variant", 22)} ${"fwd ms".padStart(8)} ${"TFLOP/s".padStart(8)} ` +
    `${"bwd ms".padStart(8)} ${"TFLOP/s".padStart(8)} ${"total".padStart(8)} ${
      "speedup".padStart(8)
    }  per kernel (ms); max rel. diff`,
);
for (const sk of shapes) {
  const s = SHAPES[sk], { B, T, H, dh } = s, D = H * dh;
  const qkvData = random(B * T * 3 * D, 1), doutData = random(B * T * D, 2);
  const mk = (f16: boolean, doutF16: boolean): Bufs => ({
    qkv: tensor([B, T, 3 * D], qkvData, f16),
    out: tensor([B, T, D], null, f16),
    aux: tensor(attentionAuxShape(B, T, D, H), null),
    dout: tensor([B, T, D], doutData, doutF16),
    dqkv: tensor([B, T, 3 * D], null, f16),
  });
  const bufs: Record<string, Bufs> = { old: mk(false, false), f32: mk(false, false) };
  if (hasF16) {
    bufs.f16 = mk(true, true);
    bufs.f16d32 = mk(true, false);
  }
  made[sk] = bufs;
  if (sk === shapes[0]) await warmUp(bufs.f32, H);
  let oldTotal = 0;
  const n2 = 2 * T * D, n2q = 2 * T * 3 * D; // first two images
  for (const [name, b] of Object.entries(bufs)) {
    let fwd: Dispatch[], bwd: Dispatch[];
    if (name === "old") {
      ({ fwd, bwd } = oldAttention(b.qkv, b.out, b.aux, b.dout, b.dqkv, B, T, H, dh));
    } else {
      fwd = attentionForward(k, b.qkv, b.out, b.aux, H);
      bwd = attentionBackward(k, b.qkv, b.out, b.aux, b.dout, b.dqkv, H);
    }
    await k.run([...fwd, ...bwd]);
    const tf = await time(fwd), tb = await time(bwd);
    const per: string[] = [];
    for (const d of bwd) {
      per.push(`${d.label.replace("attn_bwd_", "")} ${(await time([d])).toFixed(3)}`);
    }
    if (name === "old") {
      oldTotal = tf + tb;
      oldSums.fwd += tf;
      oldSums.bwd += tb;
    }
    let check = "";
    if (name === "f32") {
      check = `; vs old: out ${(await diff(b.out, bufs.old.out, n2)).toExponential(1)}, dqkv ${
        (await diff(b.dqkv, bufs.old.dqkv, n2q)).toExponential(1)
      }`;
    } else if (name !== "old") {
      check = `; vs f32: out ${(await diff(b.out, bufs.f32.out, n2)).toExponential(1)}, dqkv ${
        (await diff(b.dqkv, bufs.f32.dqkv, n2q)).toExponential(1)
      }`;
    }
    const label = { old: "previous f32 (3 bwd)", f32: "f32", f16: "f16", f16d32: "f16, dout f32" }[
      name
    ]!;
    console.log(
      `${pad(s.name, 14)} ${pad(label, 22)} ${fmt(tf)} ${fmt(4 * flops(s) / tf / 1e9, 1)} ${
        fmt(tb)
      } ${fmt(10 * flops(s) / tb / 1e9, 1)} ${fmt(tf + tb)} ${fmt(oldTotal / (tf + tb), 2)}x  ${
        per.join(", ")
      }${check}`,
    );
  }
}

// ---- (2) tile sweep --------------------------------------------------------------------------

// Candidates per precision and kernel (rows/keys/threads and code-shape flags; see
// AttentionTiles). Register-blocked ones around 4 warps a workgroup and ~20 warps an SM of
// Hopper's 228 KB, row-wise ones (f32) like the previous kernels.
const row = (rows: number, keys: number, extra: Partial<AttentionTiles> = {}): AttentionTiles => ({
  rows,
  keys,
  threads: rows,
  rowwise: true,
  ...extra,
});
const blk = (rows: number, keys: number, threads: number, extra: Partial<AttentionTiles> = {}) => ({
  rows,
  keys,
  threads,
  ...extra,
});
const SWEEP: Record<"f32" | "f16", Record<"fwd" | "dq" | "dkv", AttentionTiles[]>> = {
  f32: {
    fwd: [
      row(64, 16),
      row(64, 16, { prefetch: true }),
      row(64, 8),
      row(32, 16),
      row(64, 32),
      row(128, 16),
      blk(64, 32, 128),
      blk(64, 32, 128, { prefetch: false }),
      blk(64, 16, 128),
      blk(64, 32, 64),
      blk(32, 32, 64),
      blk(32, 16, 32),
      blk(64, 16, 64),
    ],
    dq: [
      row(64, 16),
      row(64, 16, { prefetch: true }),
      row(64, 8),
      row(32, 16),
      row(64, 32),
      blk(64, 16, 128),
      blk(64, 16, 128, { prefetch: false }),
      blk(64, 16, 64),
      blk(32, 32, 128),
      blk(32, 32, 128, { share: false }),
      blk(32, 16, 64),
      blk(32, 32, 64),
    ],
    dkv: [
      blk(8, 32, 64),
      blk(8, 32, 64, { prefetch: false }),
      blk(32, 32, 128),
      blk(32, 32, 128, { prefetch: false }),
      blk(16, 32, 128),
      blk(16, 32, 64),
      blk(8, 64, 128),
      blk(16, 32, 32),
    ],
  },
  f16: {
    fwd: [
      blk(32, 16, 32),
      blk(64, 16, 64),
      blk(64, 32, 128),
      blk(32, 32, 64),
      blk(64, 64, 128),
      blk(64, 32, 64),
      blk(128, 32, 128),
      blk(32, 16, 32, { chunk: 32 }),
      blk(64, 32, 128, { chunk: 32 }),
    ],
    dq: [
      blk(64, 16, 64),
      blk(64, 16, 64, { share: false }),
      blk(32, 32, 64),
      blk(64, 32, 128),
      blk(64, 16, 128),
      blk(128, 16, 128),
      blk(32, 16, 32),
      blk(64, 16, 64, { chunk: 32 }),
      blk(64, 32, 128, { chunk: 32 }),
    ],
    dkv: [
      blk(32, 32, 128),
      blk(16, 32, 64),
      blk(8, 32, 64),
      blk(32, 64, 128),
      blk(16, 64, 128),
      blk(32, 32, 128, { chunk: 32 }),
      blk(16, 32, 64, { chunk: 32 }),
    ],
  },
};

/** Outputs of the sweep's kernels, apart from part 1's (the references and saved inputs). */
const swept: Record<string, Bufs> = {};
function sweepBufs(sk: string, prec: string): Bufs {
  const { B, T, H, dh } = SHAPES[sk], D = H * dh, f16 = prec === "f16";
  return swept[`${sk} ${prec}`] ??= {
    ...made[sk][prec],
    out: tensor([B, T, D], null, f16),
    aux: tensor(attentionAuxShape(B, T, D, H), null),
    dqkv: tensor([B, T, 3 * D], null, f16),
  };
}

function copy(from: Tensor, to: Tensor) {
  const enc = k.device.createCommandEncoder();
  enc.copyBufferToBuffer(from.buffer, from.offset, to.buffer, to.offset, from.length * 4);
  k.device.queue.submit([enc.finish()]);
}

/**
 * One sweep case at every shape: ms per call, and the largest difference from the previous
 * kernels (f32) or f32 (f16) over the first two images.
 */
async function measureCase(prec: string, kernel: "fwd" | "dq" | "dkv", t: AttentionTiles) {
  const ms: number[] = [];
  let err = 0;
  for (const sk of shapes) {
    const { T, H, dh } = SHAPES[sk], D = H * dh;
    const b = made[sk][prec], sw = sweepBufs(sk, prec);
    const opts: AttentionOptions = { [kernel]: t };
    let d: Dispatch;
    if (kernel === "fwd") [d] = attentionForward(k, b.qkv, sw.out, sw.aux, H, opts);
    else if (kernel === "dq") {
      copy(b.aux, sw.aux); // the forward's logsumexps; dq writes aux[1] here
      [d] = attentionBackward(k, b.qkv, b.out, sw.aux, b.dout, sw.dqkv, H, opts);
    } else d = attentionBackward(k, b.qkv, b.out, b.aux, b.dout, sw.dqkv, H, opts)[1];
    ms.push(await time([d], sweepMs));
    const ref = made[sk][prec === "f32" ? "old" : "f32"];
    const cols: [number, number, number] = kernel === "dq" ? [3 * D, 0, D] : [3 * D, D, 3 * D];
    err = Math.max(
      err,
      kernel === "fwd"
        ? await diff(sw.out, ref.out, 2 * T * D)
        : await diff(sw.dqkv, ref.dqkv, 2 * T * 3 * D, cols),
    );
  }
  return { ms, err };
}

/** The tiles as TypeScript (for the defaults) and as a short label. */
const tilesTs = (t: AttentionTiles) =>
  `{ rows: ${t.rows}, keys: ${t.keys}, threads: ${t.threads}${t.rowwise ? ", rowwise: true" : ""}${
    t.prefetch !== undefined ? `, prefetch: ${t.prefetch}` : ""
  }${t.share !== undefined ? `, share: ${t.share}` : ""}${t.chunk ? `, chunk: ${t.chunk}` : ""} }`;
const tilesLabel = (t: AttentionTiles) =>
  `${t.rows}/${t.keys}/${t.threads}${t.rowwise ? " row" : ""}${
    t.prefetch === false ? " nopf" : t.prefetch ? " pf" : ""
  }${t.share === undefined ? "" : t.share ? " share" : " noshare"}${t.chunk ? ` c${t.chunk}` : ""}`;

if (!noSweep) {
  console.log(
    `\ntile sweep (ms per call; A×B / C×E: quads × columns per thread in phase 1 / 2 (row: one ` +
      `row a thread); KB: workgroup memory; /SM: workgroups that fit an SM's 228 KB)`,
  );
  console.log(
    `${pad("kernel", 10)} ${pad("tiles", 22)} ${pad("A×B / C×E", 11)} ${"KB".padStart(5)} ${
      "/SM".padStart(4)
    } ${shapes.map((s) => `${s} ms`.padStart(8)).join(" ")} ${"sum".padStart(8)}  max rel. diff`,
  );
  const results: Record<string, { t: AttentionTiles; sum: number }[]> = {};
  let stopped = false;
  for (const prec of hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    for (const kernel of ["fwd", "dq", "dkv"] as const) {
      const key = `${prec} ${kernel}`;
      results[key] = [];
      for (const t of SWEEP[prec][kernel]) {
        if ((performance.now() - start) / 1e3 > BUDGET_S) {
          stopped = true;
          break;
        }
        const l = attentionLayout(kernel, t, SHAPES[shapes[0]].dh, prec === "f16");
        const name = tilesLabel(t);
        if (typeof l === "string" || l.bytes > wgLimit) {
          console.log(
            `${pad(key, 10)} ${pad(name, 22)} skipped: ${
              typeof l === "string"
                ? l.replace(/^.*?: /, "")
                : `needs ${l.bytes} B of workgroup memory`
            }`,
          );
          continue;
        }
        const c = l.consts;
        const shape = t.rowwise ? "row" : `${c.A}×${c.B} / ${c.C}×${c.E}`;
        let ms: number[], err: number;
        try {
          ({ ms, err } = await measureCase(prec, kernel, t));
        } catch (e) {
          console.log(`${pad(key, 10)} ${pad(name, 22)} failed: ${(e as Error).message}`);
          continue;
        }
        const sum = ms.reduce((a, b) => a + b, 0);
        const ok = err <= (prec === "f32" ? 1e-4 : 2e-2);
        if (ok) results[key].push({ t, sum });
        console.log(
          `${pad(key, 10)} ${pad(name + (l.tiles.share && !t.share ? " (share)" : ""), 22)} ${
            pad(shape, 11)
          } ${(l.bytes / 1024).toFixed(1).padStart(5)} ${
            String(Math.floor(228 * 1024 / (l.bytes + 1024))).padStart(4)
          } ${ms.map((v) => fmt(v)).join(" ")} ${fmt(sum)}  ${err.toExponential(1)}${
            ok ? "" : " WRONG (not picked)"
          }`,
        );
      }
    }
  }
  if (stopped) console.log(`(sweep stopped at ${BUDGET_S} s; rerun with --shapes=S or --no-sweep)`);
  // The fastest two tiles per kernel (the second for devices with less workgroup memory).
  const best = (prec: string, kernel: string) =>
    [...(results[`${prec} ${kernel}`] ?? [])].sort((a, b) => a.sum - b.sum);
  for (const prec of hasF16 ? ["f32", "f16"] : ["f32"]) {
    const f = best(prec, "fwd")[0], q = best(prec, "dq")[0], v = best(prec, "dkv")[0];
    if (f && q && v) {
      console.log(
        `best ${prec} (sum over shapes): fwd ${f.sum.toFixed(3)} ms, bwd ${
          (q.sum + v.sum).toFixed(3)
        } ms (dq ${q.sum.toFixed(3)} + dkv ${v.sum.toFixed(3)}); previous f32 kernels: fwd ${
          oldSums.fwd.toFixed(3)
        }, bwd ${oldSums.bwd.toFixed(3)}`,
      );
    }
  }
  console.log(`\nsuggested ATTENTION_DEFAULTS (src/ops/attention.ts):`);
  for (const prec of hasF16 ? ["f32", "f16"] : ["f32"]) {
    console.log(`  ${prec}: {`);
    for (const kernel of ["fwd", "dq", "dkv"]) {
      const picks = best(prec, kernel).slice(0, 2).map((r) => tilesTs(r.t));
      console.log(`    ${kernel}: [${picks.join(", ")}],`);
    }
    console.log(`  },`);
  }
}
console.log(`# ${((performance.now() - start) / 1e3).toFixed(1)} s`);
