// Multi-head self-attention over timm/DiT's qkv layout, flash-style (no T×T matrix stored).
//   qkv [B, T, 3·D], last axis (3, heads, dh); out [B, T, D], heads concatenated.
//   aux [2, B, heads, T] f32: aux[0] = natural logsumexp of each query row's scaled scores
//   (forward); aux[1] = D_i = Σ_j dout·out of each row (dQ kernel, read by the dK/dV kernel).
// Entry points (one per expansion, KERNEL):
//   0 attn_fwd      register-blocked forward, query-major
//   1 attn_bwd_dq   register-blocked dQ (and D_i), query-major
//   2 attn_bwd_dkv  register-blocked dK and dV, key-major, from one recomputation of P
//   3 attn_fwd_row  one thread per query row (q and the output row in registers), f32
//   4 attn_bwd_dq_row  one thread per query row (q, dO and dq in registers), f32
//
// Register-blocked kernels: a workgroup owns OWN rows (fwd, dq: query rows; dkv: keys) held in
// workgroup memory transposed (tile[d][quad] = 4 rows at dim d); the other side streams through
// in row-major tiles of TILE rows. Per tile, two register-blocked products:
//   phase 1: each thread computes the scores (and dP in the backward) of 4·A owned rows × B
//            streamed rows as outer products: a splatted element of a streamed row times a quad;
//   phase 2: P (or dS), written to workgroup memory by phase 1, times the streamed tile into each
//            thread's 4·C owned rows × E vec4 slots of dh.
// A thread's owned quads are contiguous and a warp's threads consecutive, so the warps whose rows
// all lie past T (the last block) skip both phases. T is a constant: the last streamed tile
// (TAIL = T % TILE rows) is a second copy of the loop body over exactly those rows, so no work is
// spent on padding rows. The next tile is read from global memory into registers while this one
// is multiplied (PF). The forward's P reuses K's buffer (dead after phase 1); with SHARE dQ's dS
// reuses V's, at the cost of one more barrier. Row-major tiles and P have an odd number of vec4
// per row so that the different rows one warp touches fall in different banks.
//
// Row-wise kernels: all of a tile's threads read the same K/V row at once (a broadcast); the
// online softmax runs per key. Fewer products per workgroup-memory read, no P round trip.
//
// Inner loops are unrolled at expansion (src/ops/attention_template.ts): Deno bounds every runtime
// loop and clamps every dynamic index, so only tile loops stay runtime and tile indices constant.
// F16: tiles and products in f16, each f16 accumulator (h, hp, g, y) added into an f32 one every
// FLD d4 steps (phase 1) or FLK rows/keys (phase 2); statistics and D_i in f32.
// Scores are in base-2 units (scaled by log2(e)/sqrt(dh)). Every sum runs in a fixed order.

//#if F16
enable f16;
//#end
alias V4 = vec4<{ET}>; // tiles, qkv, out, dqkv
alias VO = vec4<{OT}>; // dout

struct U {
  total: u32, // workgroups: B·heads·NBLK
  bht: u32,   // B·heads·T: offset of aux[1]
}

const NEG: f32 = -3.0e38;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;
const QS: f32 = {QS};       // log2(e) / sqrt(dh)
const SCALE: f32 = {SCALE}; // 1 / sqrt(dh)

@group(0) @binding(0) var<uniform> u: U;
@group(0) @binding(1) var<storage, read> qkv: array<V4>;
//#if KERNEL == 0 || KERNEL == 3
@group(0) @binding(2) var<storage, read_write> dst: array<V4>; // out
@group(0) @binding(3) var<storage, read_write> aux: array<f32>;
//#end
//#if KERNEL == 1 || KERNEL == 4
@group(0) @binding(2) var<storage, read> dout: array<VO>;
@group(0) @binding(3) var<storage, read> outr: array<V4>; // the forward's out
@group(0) @binding(4) var<storage, read_write> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> dst: array<V4>; // dqkv
//#end
//#if KERNEL == 2
@group(0) @binding(2) var<storage, read> dout: array<VO>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<V4>; // dqkv
//#end

struct Blk { bh: u32, b: u32, h: u32, r0: u32 }

// Workgroup w's (b, h) and first owned row.
fn block(w: u32) -> Blk {
  let bh = w / {NBLK}u;
  return Blk(bh, bh / {H}u, bh % {H}u, (w % {NBLK}u) * {OWN}u);
}

// ---- pieces shared by the kernels (expanded where used) ---------------------------------------

// Every kernel's start: its workgroup's block (grid slots past the last block return) and the
// offsets of (b, h)'s Q (qb) and K (kb; V at kb + D4) in qkv.
//#def BLOCK
let w = wid.x + wid.y * nw.x;
if (w >= u.total) { return; }
let bk = block(w);
let qb = bk.b * {T*RS}u + bk.h * {DH4}u;
let kb = qb + {D4}u;
//#enddef

// Registers of the streamed tile: item t of this thread is row lj{t}, vec4 ld{t} (p0: K or Q,
// p1: V or dO; dkv also pl, pd: logsumexp and D_i of row la{t}).
//#def TILEREGS
let lj{t} = min((lid + {t*NT}u) / {DH4}u, {TILE-1}u); //#for t in NLD
let ld{t} = (lid + {t*NT}u) % {DH4}u; //#for t in NLD
var p0{t} = V4(); //#for t in NLD
var p1{t} = V4(); //#for t in NLD
//#if KERNEL == 2
let la{t} = min(lid + {t*NT}u, {TILE-1}u); //#for t in NLA
var pl{t} = 0.0; //#for t in NLA
var pd{t} = 0.0; //#for t in NLA
//#end
//#enddef

// Read the streamed tile starting at row t0 into the registers (rows clamped to T−1).
//#def LOADT
//#for t in NLD
{
  let row = min(t0 + lj{t}, {T1}u);
  //#if KERNEL == 2
  p0{t} = qkv[qb + row * {RS}u + ld{t}];
  p1{t} = V4(dout[ob + row * {D4}u + ld{t}]);
  //#else
  let gi = kb + row * {RS}u + ld{t};
  p0{t} = qkv[gi];
  p1{t} = qkv[gi + {D4}u];
  //#end
}
//#end
//#if KERNEL == 2
//#for t in NLA
{
  let row = min(t0 + la{t}, {T1}u);
  pl{t} = aux[lb + row] * LOG2E;
  pd{t} = aux[u.bht + lb + row];
}
//#end
//#end
//#enddef

// Registers → the workgroup tile.
//#def STORET
//#for t in NLD
//#if (t + 1) * NT > TILE * DH4
if (lid + {t*NT}u < {TILE*DH4}u) {
//#else
{
//#end
  {B0}[lj{t}][ld{t}] = p0{t};
  {B1}[lj{t}][ld{t}] = p1{t};
}
//#end
//#if KERNEL == 2
//#for t in NLA
//#if (t + 1) * NT > TILE
if (lid + {t*NT}u < {TILE}u) {
//#else
{
//#end
  ls[la{t}] = pl{t};
  dl[la{t}] = pd{t};
}
//#end
//#end
//#enddef

//#def PREFETCH0
//#if PF
{
  let t0 = 0u;
  //#use LOADT
}
//#end
//#enddef

// Opens the loop over full tiles (pass 0) or the block of the tail tile (pass 1), stores the tile
// and starts reading the next one.
//#def TILESTART
//#if pass == 0
for (var it = 0u; it < {NFULL}u; it++) {
  let tk = it * {TILE}u;
//#else
{
  let tk = {NFULL*TILE}u;
//#end
  workgroupBarrier();
  //#if !PF
  {
    let t0 = tk;
    //#use LOADT
  }
  //#end
  //#use STORET
  workgroupBarrier();
  //#if PF && pass == 0
  if (tk + {TILE}u < {T}u) {
    let t0 = tk + {TILE}u;
    //#use LOADT
  }
  //#end
//#enddef

// The owned block, transposed: O0[d][quad] (Q or K), O1 (dO or V).
//#def OWNT
//#for t in (N4*DH4+NT-1)/NT
//#if (t + 1) * NT > N4 * DH4
if (lid + {t*NT}u < {N4*DH4}u) {
//#else
{
//#end
  let r = (lid + {t*NT}u) / {DH4}u;
  let d = (lid + {t*NT}u) % {DH4}u;
  let i{x} = min(bk.r0 + 4u * r + {x}u, {T1}u); //#for x in 4
  //#if KERNEL == 2
  let a{x} = qkv[kb + i{x} * {RS}u + d]; //#for x in 4
  let b{x} = qkv[kb + i{x} * {RS}u + d + {D4}u]; //#for x in 4
  //#else
  let a{x} = qkv[qb + i{x} * {RS}u + d]; //#for x in 4
  //#end
  //#if KERNEL == 1
  let b{x} = V4(dout[ob + i{x} * {D4}u + d]); //#for x in 4
  //#end
  {O0}[4u * d + {x}u][r] = V4(a0[{x}], a1[{x}], a2[{x}], a3[{x}]); //#for x in 4
  //#if KERNEL != 0
  {O1}[4u * d + {x}u][r] = V4(b0[{x}], b1[{x}], b2[{x}], b3[{x}]); //#for x in 4
  //#end
}
//#end
//#enddef

// Thread layout. Phase 1: owned quads oa (A contiguous), streamed rows sb (B, NB apart);
// phase 2: owned quads oc (C contiguous), dh vec4 slots se (E, NE apart).
//#def MAP
let pb = lid % {NB}u;
let pa = lid / {NB}u;
let pe = lid % {NE}u;
let pc = lid / {NE}u;
let oa{a} = pa * {A}u + {a}u; //#for a in A
let sb{b} = pb + {b*NB}u; //#for b in B
let oc{c} = pc * {C}u + {c}u; //#for c in C
let se{e} = pe + {e*NE}u; //#for e in E
let act1 = bk.r0 + {4*A}u * pa < {T}u;
let act2 = bk.r0 + {4*C}u * pc < {T}u;
//#enddef

// Phase 1 products over dh: h = X0·Y0 (scores), with TWO also hp = X1·Y1 (dP); f32 results f, fp.
//#def DOT1
var h{a}_{b} = V4(); //#for a in A, b in BT
//#if TWO
var hp{a}_{b} = V4(); //#for a in A, b in BT
//#end
//#if F16
var f{a}_{b} = vec4f(0.0); //#for a in A, b in BT
//#if TWO
var fp{a}_{b} = vec4f(0.0); //#for a in A, b in BT
//#end
//#end
//#for d in DH4
{
  let x{b} = {X0}[sb{b}][{d}]; //#for b in BT
  //#if TWO
  let y{b} = {X1}[sb{b}][{d}]; //#for b in BT
  //#end
  //#for x in 4
  {
    let q{a} = {Y0}[{4*d+x}][oa{a}]; //#for a in A
    h{a}_{b} = fma(V4(x{b}[{x}]), q{a}, h{a}_{b}); //#for a in A, b in BT
    //#if TWO
    let g{a} = {Y1}[{4*d+x}][oa{a}]; //#for a in A
    hp{a}_{b} = fma(V4(y{b}[{x}]), g{a}, hp{a}_{b}); //#for a in A, b in BT
    //#end
  }
  //#end
  //#if F16 && ((d+1)%FLD == 0 || d+1 == DH4)
  f{a}_{b} += vec4f(h{a}_{b}); //#for a in A, b in BT
  h{a}_{b} = V4(); //#for a in A, b in BT
  //#if TWO
  fp{a}_{b} += vec4f(hp{a}_{b}); //#for a in A, b in BT
  hp{a}_{b} = V4(); //#for a in A, b in BT
  //#end
  //#end
}
//#end
//#if !F16
let f{a}_{b} = h{a}_{b}; //#for a in A, b in BT
//#if TWO
let fp{a}_{b} = hp{a}_{b}; //#for a in A, b in BT
//#end
//#end
//#enddef

// f16: add the f16 phase-2 accumulators into the f32 ones every FLK rows and at the tile's end.
//#def FLUSH2
//#if F16 && ((j+1)%FLK == 0 || j+1 == KT)
o{c}_{r}_{e} += vec4f(g{c}_{r}_{e}); //#for c in C, r in 4, e in E
g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
//#if KERNEL == 2
u{c}_{r}_{e} += vec4f(y{c}_{r}_{e}); //#for c in C, r in 4, e in E
y{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
//#end
//#end
//#enddef

// Row-wise dots run as two vec4 partial sums (eight independent lanes; few registers: the dQ
// kernel already holds q, dO and dq).
fn hsum(a: vec4f, b: vec4f) -> f32 {
  let s = a + b;
  return (s.x + s.y) + (s.z + s.w);
}

//#if KERNEL == 0
var<workgroup> qt: array<array<V4, {N4}>, {DH}>;    // Q transposed: qt[d][r] = rows 4r..4r+3
var<workgroup> kp: array<array<V4, {KPW}>, {TILE}>; // K tile by rows, then P: kp[j][r] = rows 4r..
var<workgroup> vr: array<array<V4, {DH4}>, {TILE}>; // V tile by rows
var<workgroup> mx: array<array<vec4f, {N4P}>, {NB}>; // row maxima over each thread column's keys
var<workgroup> sx: array<array<vec4f, {N4P}>, {NB}>; // row sums of P over each column's keys

// out = softmax(q·kᵀ/√dh)·v with an online softmax over key tiles.
@compute @workgroup_size({NT})
fn attn_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  //#use BLOCK
  //#use OWNT
  //#use TILEREGS
  //#use PREFETCH0
  //#use MAP
  var m{a} = vec4f(NEG); //#for a in A
  var mo{c} = vec4f(NEG); //#for c in C
  var lo{c} = vec4f(0.0); //#for c in C
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  //#for pass in 2
  //#if (pass == 0 && NFULL > 0) || (pass == 1 && TAIL > 0)
  //#let KT = (pass == 0) * TILE + (pass == 1) * TAIL
  //#let BT = (KT + NB - 1) / NB
  //#let MASK = KT % NB != 0
  //#use TILESTART
    var s{a}_{b} = vec4f(NEG); //#for a in A, b in BT
    if (act1) {
      //#use DOT1
      //#if MASK
      s{a}_{b} = select(f{a}_{b} * QS, vec4f(NEG), sb{b} >= {KT}u); //#for a in A, b in BT
      //#else
      s{a}_{b} = f{a}_{b} * QS; //#for a in A, b in BT
      //#end
      var lm{a} = s{a}_0; //#for a in A
      lm{a} = max(lm{a}, s{a}_{b+1}); //#for a in A, b in BT-1
      mx[pb][oa{a}] = lm{a}; //#for a in A
    }
    workgroupBarrier();
    // Every thread holding a row derives the same new maximum from mx (max is exact). P goes
    // into K's buffer: every phase-1 read of K is done.
    if (act1) {
      var mn{a} = m{a}; //#for a in A
      mn{a} = max(mn{a}, mx[{b}][oa{a}]); //#for a in A, b in NB
      var ps{a} = vec4f(0.0); //#for a in A
      //#for a in A, b in BT
      {
        let pr = exp2(s{a}_{b} - mn{a});
        kp[sb{b}][oa{a}] = V4(pr);
        ps{a} += pr;
      }
      //#end
      sx[pb][oa{a}] = ps{a}; //#for a in A
      m{a} = mn{a}; //#for a in A
    }
    workgroupBarrier();
    if (act2) {
      //#for c in C
      {
        var mn = mo{c};
        mn = max(mn, mx[{b}][oc{c}]); //#for b in NB
        let al = exp2(mo{c} - mn);
        mo{c} = mn;
        var sum = vec4f(0.0);
        sum += sx[{b}][oc{c}]; //#for b in NB
        lo{c} = lo{c} * al + sum;
        o{c}_{r}_{e} *= al[{r}]; //#for r in 4, e in E
      }
      //#end
      //#for j in KT
      {
        let pj{c} = kp[{j}][oc{c}]; //#for c in C
        let v{e} = vr[{j}][se{e}]; //#for e in E
        {ACC}{c}_{r}_{e} = fma(V4(pj{c}[{r}]), v{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
        //#use FLUSH2
      }
      //#end
    }
  }
  //#end
  //#end
  let ob = bk.b * {T*D4}u + bk.h * {DH4}u;
  //#for c in C, r in 4
  {
    let row = bk.r0 + 4u * oc{c} + {r}u;
    if (row < {T}u) {
      let inv = 1.0 / lo{c}[{r}];
      dst[ob + row * {D4}u + se{e}] = V4(o{c}_{r}_{e} * inv); //#for e in E
      if (pe == 0u) { aux[bk.bh * {T}u + row] = (mo{c}[{r}] + log2(lo{c}[{r}])) * LN2; }
    }
  }
  //#end
}
//#end

//#if KERNEL == 1
var<workgroup> qt: array<array<V4, {N4}>, {DH}>;    // Q transposed: qt[d][r] = rows 4r..4r+3
var<workgroup> gt: array<array<V4, {N4}>, {DH}>;    // dO transposed
var<workgroup> kr: array<array<V4, {DH4P}>, {TILE}>; // K tile by rows
var<workgroup> vp: array<array<V4, {VPW}>, {TILE}>; // V tile by rows (SHARE: then dS)
//#if !SHARE
var<workgroup> dt: array<array<V4, {N4P}>, {TILE}>; // dS: dt[j][r] = rows 4r..4r+3 at key j
//#end
var<workgroup> dd: array<f32, {OWN}>;               // D_i of the block's rows

// Base-2 logsumexp of rows r..r+3 (clamped to the last row).
fn lse4(base: u32, r: u32) -> vec4f {
  return LOG2E * vec4f(aux[base + min(r, {T1}u)], aux[base + min(r + 1u, {T1}u)],
                       aux[base + min(r + 2u, {T1}u)], aux[base + min(r + 3u, {T1}u)]);
}

// dq_i = scale·Σ_j P_ij (dO_i·v_j − D_i) k_j; stores D_i = dO_i·O_i in aux[1] for attn_bwd_dkv.
@compute @workgroup_size({NT})
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  //#use BLOCK
  let ob = bk.b * {T*D4}u + bk.h * {DH4}u;
  //#use OWNT
  //#for t in (OWN+NT-1)/NT
  {
    let i = lid + {t*NT}u;
    if (i < {OWN}u) {
      let x = ob + min(bk.r0 + i, {T1}u) * {D4}u;
      var s = 0.0;
      s += dot(vec4f(dout[x + {d}u]), vec4f(outr[x + {d}u])); //#for d in DH4
      dd[i] = s;
      if (bk.r0 + i < {T}u) { aux[u.bht + bk.bh * {T}u + bk.r0 + i] = s; }
    }
  }
  //#end
  //#use TILEREGS
  //#use PREFETCH0
  workgroupBarrier();
  //#use MAP
  let ls{a} = lse4(bk.bh * {T}u, bk.r0 + 4u * oa{a}); //#for a in A
  let di{a} = vec4f(dd[4u * oa{a}], dd[4u * oa{a} + 1u], dd[4u * oa{a} + 2u], dd[4u * oa{a} + 3u]); //#for a in A
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  //#for pass in 2
  //#if (pass == 0 && NFULL > 0) || (pass == 1 && TAIL > 0)
  //#let KT = (pass == 0) * TILE + (pass == 1) * TAIL
  //#let BT = (KT + NB - 1) / NB
  //#let MASK = KT % NB != 0
  //#use TILESTART
    //#if SHARE
    var ds{a}_{b} = V4(); //#for a in A, b in BT
    //#end
    if (act1) {
      //#use DOT1
      //#for a in A, b in BT
      {
        //#if MASK
        let pr = select(exp2(f{a}_{b} * QS - ls{a}), vec4f(0.0), sb{b} >= {KT}u);
        //#else
        let pr = exp2(f{a}_{b} * QS - ls{a});
        //#end
        //#if SHARE
        ds{a}_{b} = V4(pr * (fp{a}_{b} - di{a}));
        //#else
        dt[sb{b}][oa{a}] = V4(pr * (fp{a}_{b} - di{a}));
        //#end
      }
      //#end
    }
    //#if SHARE
    workgroupBarrier(); // every phase-1 read of V is done
    if (act1) {
      vp[sb{b}][oa{a}] = ds{a}_{b}; //#for a in A, b in BT
    }
    //#end
    workgroupBarrier();
    if (act2) {
      //#for j in KT
      {
        let s{c} = {DS}[{j}][oc{c}]; //#for c in C
        let k{e} = kr[{j}][se{e}]; //#for e in E
        {ACC}{c}_{r}_{e} = fma(V4(s{c}[{r}]), k{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
        //#use FLUSH2
      }
      //#end
    }
  }
  //#end
  //#end
  //#for c in C, r in 4
  {
    let row = bk.r0 + 4u * oc{c} + {r}u;
    if (row < {T}u) {
      dst[qb + row * {RS}u + se{e}] = V4(o{c}_{r}_{e} * SCALE); //#for e in E
    }
  }
  //#end
}
//#end

//#if KERNEL == 2
var<workgroup> kt: array<array<V4, {N4}>, {DH}>;     // K transposed: kt[d][r] = keys 4r..4r+3
var<workgroup> vt: array<array<V4, {N4}>, {DH}>;     // V transposed
var<workgroup> qr: array<array<V4, {DH4P}>, {TILE}>; // Q tile by rows
var<workgroup> gr: array<array<V4, {DH4P}>, {TILE}>; // dO tile by rows
var<workgroup> ls: array<f32, {TILE}>;               // base-2 logsumexp of the tile's rows
var<workgroup> dl: array<f32, {TILE}>;               // D_i of the tile's rows
var<workgroup> pr: array<array<V4, {N4P}>, {TILE}>;  // P: pr[i][r] = keys 4r..4r+3 of row i
var<workgroup> sr: array<array<V4, {N4P}>, {TILE}>;  // dS, same layout

// dk_j = scale·Σ_i P_ij (dO_i·v_j − D_i) q_i and dv_j = Σ_i P_ij dO_i from one recomputation of P.
@compute @workgroup_size({NT})
fn attn_bwd_dkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  //#use BLOCK
  let ob = bk.b * {T*D4}u + bk.h * {DH4}u;
  let lb = bk.bh * {T}u;
  //#use OWNT
  //#use TILEREGS
  //#use PREFETCH0
  //#use MAP
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  var u{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  var y{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  //#for pass in 2
  //#if (pass == 0 && NFULL > 0) || (pass == 1 && TAIL > 0)
  //#let KT = (pass == 0) * TILE + (pass == 1) * TAIL
  //#let BT = (KT + NB - 1) / NB
  //#let MASK = KT % NB != 0
  //#use TILESTART
    if (act1) {
      //#use DOT1
      //#for a in A, b in BT
      {
        //#if MASK
        let pv = select(exp2(f{a}_{b} * QS - ls[sb{b}]), vec4f(0.0), sb{b} >= {KT}u);
        //#else
        let pv = exp2(f{a}_{b} * QS - ls[sb{b}]);
        //#end
        pr[sb{b}][oa{a}] = V4(pv);
        sr[sb{b}][oa{a}] = V4(pv * (fp{a}_{b} - dl[sb{b}]));
      }
      //#end
    }
    workgroupBarrier();
    if (act2) {
      //#for j in KT
      {
        let pp{c} = pr[{j}][oc{c}]; //#for c in C
        let ss{c} = sr[{j}][oc{c}]; //#for c in C
        let gg{e} = gr[{j}][se{e}]; //#for e in E
        let qq{e} = qr[{j}][se{e}]; //#for e in E
        {ACV}{c}_{r}_{e} = fma(V4(pp{c}[{r}]), gg{e}, {ACV}{c}_{r}_{e}); //#for c in C, r in 4, e in E
        {ACC}{c}_{r}_{e} = fma(V4(ss{c}[{r}]), qq{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
        //#use FLUSH2
      }
      //#end
    }
  }
  //#end
  //#end
  //#for c in C, r in 4
  {
    let key = bk.r0 + 4u * oc{c} + {r}u;
    if (key < {T}u) {
      dst[kb + key * {RS}u + se{e}] = V4(o{c}_{r}_{e} * SCALE); //#for e in E
      dst[kb + {D4}u + key * {RS}u + se{e}] = V4(u{c}_{r}_{e}); //#for e in E
    }
  }
  //#end
}
//#end

//#if KERNEL == 3 || KERNEL == 4
var<workgroup> ta: array<array<V4, {DH4}>, {TILE}>; // K tile by rows
var<workgroup> tb: array<array<V4, {DH4}>, {TILE}>; // V tile by rows
//#end

//#if KERNEL == 3
// One thread per query row: out = softmax(q·kᵀ/√dh)·v, online softmax per key.
@compute @workgroup_size({NT})
fn attn_fwd_row(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  //#use BLOCK
  let row = bk.r0 + lid;
  let act = row < {T}u; // whole warps past T skip the products
  let i = min(row, {T1}u);
  let q{d} = qkv[qb + i * {RS}u + {d}u] * QS; //#for d in DH4
  var a{d} = vec4f(0.0); //#for d in DH4
  var m = NEG;
  var l = 0.0;
  //#use TILEREGS
  //#use PREFETCH0
  //#for pass in 2
  //#if (pass == 0 && NFULL > 0) || (pass == 1 && TAIL > 0)
  //#let KT = (pass == 0) * TILE + (pass == 1) * TAIL
  //#use TILESTART
    if (act) {
      //#for j in KT
      {
        var c{z} = vec4f(0.0); //#for z in 2
        c{d%2} = fma(q{d}, ta[{j}][{d}], c{d%2}); //#for d in DH4
        let s = hsum(c0, c1);
        if (s > m) { // rescale only when the running max grows
          let al = exp2(m - s);
          l *= al;
          a{d} *= al; //#for d in DH4
          m = s;
        }
        let pr = exp2(s - m);
        l += pr;
        a{d} = fma(vec4f(pr), tb[{j}][{d}], a{d}); //#for d in DH4
      }
      //#end
    }
  }
  //#end
  //#end
  if (act) {
    let ob = (bk.b * {T}u + row) * {D4}u + bk.h * {DH4}u;
    let inv = 1.0 / l;
    dst[ob + {d}u] = a{d} * inv; //#for d in DH4
    aux[bk.bh * {T}u + row] = (m + log2(l)) * LN2;
  }
}
//#end

//#if KERNEL == 4
// One thread per query row: dq_i = scale·Σ_j P_ij (dO_i·v_j − D_i) k_j, and D_i into aux[1].
@compute @workgroup_size({NT})
fn attn_bwd_dq_row(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                   @builtin(local_invocation_index) lid: u32) {
  //#use BLOCK
  let row = bk.r0 + lid;
  let act = row < {T}u;
  let ob = bk.b * {T*D4}u + bk.h * {DH4}u;
  let i = min(row, {T1}u);
  let q{d} = qkv[qb + i * {RS}u + {d}u] * QS; //#for d in DH4
  let g{d} = vec4f(dout[ob + i * {D4}u + {d}u]); //#for d in DH4
  var di = 0.0;
  di += dot(g{d}, vec4f(outr[ob + i * {D4}u + {d}u])); //#for d in DH4
  let lse = aux[bk.bh * {T}u + i] * LOG2E;
  if (act) { aux[u.bht + bk.bh * {T}u + row] = di; }
  var dq{d} = vec4f(0.0); //#for d in DH4
  //#use TILEREGS
  //#use PREFETCH0
  //#for pass in 2
  //#if (pass == 0 && NFULL > 0) || (pass == 1 && TAIL > 0)
  //#let KT = (pass == 0) * TILE + (pass == 1) * TAIL
  //#use TILESTART
    if (act) {
      //#for j in KT
      {
        var c{z} = vec4f(0.0); //#for z in 2
        c{d%2} = fma(q{d}, ta[{j}][{d}], c{d%2}); //#for d in DH4
        var e{z} = vec4f(0.0); //#for z in 2
        e{d%2} = fma(g{d}, tb[{j}][{d}], e{d%2}); //#for d in DH4
        let pr = exp2(hsum(c0, c1) - lse);
        let ds = pr * (hsum(e0, e1) - di);
        dq{d} = fma(vec4f(ds), ta[{j}][{d}], dq{d}); //#for d in DH4
      }
      //#end
    }
  }
  //#end
  //#end
  if (act) {
    dst[qb + row * {RS}u + {d}u] = dq{d} * SCALE; //#for d in DH4
  }
}
//#end
