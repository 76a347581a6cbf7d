/**
 * The previous attention kernels (commit 8d2f19a: one thread per query row, the backward in three
 * dispatches), kept only for tasks/attention_bench.ts to compare against and check with.
 */
import { type Dispatch, f32, type Kernels, specialise } from "../src/gpu/kernels.ts";
import type { Bufs } from "./attention_cases.ts";

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
export function oldAttention(
  k: Kernels,
  { qkv, out, aux, dout, dqkv }: Bufs,
  B: number,
  T: number,
  H: number,
  dh: number,
): { fwd: Dispatch[]; bwd: Dispatch[] } {
  const wgLimit = k.device.limits.maxComputeWorkgroupStorageSize;
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
