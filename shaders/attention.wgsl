// Multi-head self-attention over timm/DiT's qkv layout, flash-style (no T×T matrix stored).
//   qkv [B, T, 3·D], last axis (3, heads, dh); out [B, T, D], heads concatenated.
//   aux [2, B, heads, T] f32: aux[0] = natural logsumexp of each query row's scaled scores
//   (attn_fwd); aux[1] = D_i = Σ_j dout·out of each row (attn_bwd_dq, read by attn_bwd_dkv).
//
// A workgroup owns a block of rows (attn_fwd, attn_bwd_dq: query rows; attn_bwd_dkv: keys) held in
// workgroup memory transposed (tile[d][quad] = 4 rows at dim d); the other side streams through
// in row-major tiles. Per tile, two register-blocked products:
//   phase 1: each thread computes a 4·A × B block of scores (and dP in the backward) as outer
//            products: a splatted element of a streamed row times a quad of owned rows;
//   phase 2: P (or dS), written to workgroup memory by phase 1, times the streamed tile into each
//            thread's 4·C rows × E vec4 slots of dh.
// Row-major tiles are padded to an odd number of vec4 per row so that the 8–16 different rows one
// warp reads at once fall in different banks. Every sum runs in a fixed order, no atomics.
// Inner loops are unrolled at expansion (src/ops/attention.ts): Deno bounds every runtime loop and
// clamps every dynamic index, so only tile loops stay runtime and tile indices stay constant.
//
// Template (expanded by src/ops/attention.ts `expandTemplate`): #for lines (block or one-line
// suffix) repeat, #if / #else / #end lines select, {EXPR} substitutes. F16: tiles and products in
// f16, each f16 accumulator (h, hp, g, y) added into an f32 one every FLD d4 steps (phase 1) or
// FLK rows/keys (phase 2).
// Scores are in base-2 units (scaled by log2(e)/sqrt(dh)).

//#if F16
enable f16;
//#end
alias V4 = vec4<{ET}>; // tiles, qkv, out, dqkv
alias VO = vec4<{OT}>; // dout

struct P {
  T: u32,
  H: u32,
  D4: u32,    // D / 4
  nblk: u32,  // workgroups per (b, h)
  total: u32, // workgroups: B·H·nblk
  BHT: u32,   // B·H·T: offset of aux[1]
  qs: f32,    // log2(e) / sqrt(dh)
  scale: f32, // 1 / sqrt(dh)
}

const NEG: f32 = -3.0e38;
const LOG2E: f32 = 1.4426950408889634;
const LN2: f32 = 0.6931471805599453;

@group(0) @binding(0) var<storage, read> qkv: array<V4>;
// attn_fwd: out. Backward: dqkv.
@group(0) @binding(1) var<storage, read_write> dst: array<V4>;
@group(0) @binding(2) var<storage, read_write> aux: array<f32>;
@group(0) @binding(3) var<uniform> p: P;
//#if KERNEL != 0
@group(0) @binding(4) var<storage, read> dout: array<VO>;
//#end
//#if KERNEL == 1
// attn_bwd_dq only: the forward's out.
@group(0) @binding(5) var<storage, read> outr: array<V4>;
//#end

struct Blk { bh: u32, b: u32, h: u32, r0: u32 }

// Workgroup w's (b, h) and first owned row.
fn block(w: u32, n: u32) -> Blk {
  let bh = w / p.nblk;
  return Blk(bh, bh / p.H, bh % p.H, (w % p.nblk) * n);
}

//#if KERNEL == 0
var<workgroup> qt: array<array<V4, {N4}>, {DH}>;     // Q transposed: qt[d][r] = rows 4r..4r+3
var<workgroup> kr: array<array<V4, {DH4P}>, {KEYS}>; // K tile by rows
var<workgroup> vr: array<array<V4, {DH4}>, {KEYS}>;  // V tile by rows
var<workgroup> pt: array<array<V4, {N4}>, {KEYS}>;   // P: pt[j][r] = rows 4r..4r+3 at key j
var<workgroup> mx: array<array<vec4f, {N4}>, {NB}>;  // row maxima over each thread column's keys
var<workgroup> sx: array<array<vec4f, {N4}>, {NB}>;  // row sums of P over each column's keys

// out = softmax(q·kᵀ/√dh)·v with an online softmax over key tiles.
@compute @workgroup_size({NT})
fn attn_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
            @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nw.x;
  if (w >= p.total) { return; }
  let bk = block(w, {ROWS}u);
  let T = p.T;
  let T1 = T - 1u;
  let rs = 3u * p.D4;
  let qb = bk.b * T * rs + bk.h * {DH4}u;
  let kb = qb + p.D4;
  //#for t in (N4*DH4+NT-1)/NT
  {
    let it = lid + {t*NT}u;
    if (it < {N4*DH4}u) {
      let r = it / {DH4}u;
      let d = it % {DH4}u;
      let a{x} = qkv[qb + min(bk.r0 + 4u * r + {x}u, T1) * rs + d]; //#for x in 4
      qt[4u * d + {x}u][r] = V4(a0[{x}], a1[{x}], a2[{x}], a3[{x}]); //#for x in 4
    }
  }
  //#end
  // Phase 1: row quads qa (owned) × keys kj (streamed); phase 2: row quads qc × dh slots se.
  let pb = lid % {NB}u;
  let pa = lid / {NB}u;
  let qa{a} = pa + {a*NA}u; //#for a in A
  let kj{b} = pb + {b*NB}u; //#for b in B
  let pe = lid % {NE}u;
  let pc = lid / {NE}u;
  let qc{c} = pc + {c*NC}u; //#for c in C
  let se{e} = pe + {e*NE}u; //#for e in E
  var m{a} = vec4f(NEG); //#for a in A
  var mo{c} = vec4f(NEG); //#for c in C
  var lo{c} = vec4f(0.0); //#for c in C
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  for (var tk = 0u; tk < T; tk += {KEYS}u) {
    workgroupBarrier();
    //#for t in (KEYS*DH4+NT-1)/NT
    {
      let it = lid + {t*NT}u;
      if (it < {KEYS*DH4}u) {
        let j = it / {DH4}u;
        let d = it % {DH4}u;
        let i = kb + min(tk + j, T1) * rs + d;
        kr[j][d] = qkv[i];
        vr[j][d] = qkv[i + p.D4];
      }
    }
    //#end
    workgroupBarrier();
    var h{a}_{b} = V4(); //#for a in A, b in B
    //#if F16
    var f{a}_{b} = vec4f(0.0); //#for a in A, b in B
    //#end
    //#for d in DH4
    {
      let k{b} = kr[kj{b}][{d}]; //#for b in B
      //#for x in 4
      {
        let q{a} = qt[{4*d+x}][qa{a}]; //#for a in A
        h{a}_{b} = fma(V4(k{b}[{x}]), q{a}, h{a}_{b}); //#for a in A, b in B
      }
      //#end
      //#if F16 && ((d+1)%FLD == 0 || d+1 == DH4)
      f{a}_{b} += vec4f(h{a}_{b}); //#for a in A, b in B
      h{a}_{b} = V4(); //#for a in A, b in B
      //#end
    }
    //#end
    //#if !F16
    let f{a}_{b} = h{a}_{b}; //#for a in A, b in B
    //#end
    let s{a}_{b} = select(f{a}_{b} * p.qs, vec4f(NEG), tk + kj{b} > T1); //#for a in A, b in B
    var lm{a} = s{a}_0; //#for a in A
    lm{a} = max(lm{a}, s{a}_{b}); //#for a in A, b in B
    mx[pb][qa{a}] = lm{a}; //#for a in A
    workgroupBarrier();
    // Every thread holding a row derives the same new maximum from mx (max is exact).
    var mn{a} = m{a}; //#for a in A
    mn{a} = max(mn{a}, mx[{b}][qa{a}]); //#for a in A, b in NB
    var ps{a} = vec4f(0.0); //#for a in A
    //#for a in A, b in B
    {
      let pr = exp2(s{a}_{b} - mn{a});
      pt[kj{b}][qa{a}] = V4(pr);
      ps{a} += pr;
    }
    //#end
    sx[pb][qa{a}] = ps{a}; //#for a in A
    m{a} = mn{a}; //#for a in A
    workgroupBarrier();
    //#for c in C
    {
      var mn = mo{c};
      mn = max(mn, mx[{b}][qc{c}]); //#for b in NB
      let al = exp2(mo{c} - mn);
      mo{c} = mn;
      var sum = vec4f(0.0);
      sum += sx[{b}][qc{c}]; //#for b in NB
      lo{c} = lo{c} * al + sum;
      o{c}_{r}_{e} *= al[{r}]; //#for r in 4, e in E
    }
    //#end
    //#for j in KEYS
    {
      let pj{c} = pt[{j}][qc{c}]; //#for c in C
      let v{e} = vr[{j}][se{e}]; //#for e in E
      {ACC}{c}_{r}_{e} = fma(V4(pj{c}[{r}]), v{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
      //#if F16 && ((j+1)%FLK == 0 || j+1 == KEYS)
      o{c}_{r}_{e} += vec4f(g{c}_{r}_{e}); //#for c in C, r in 4, e in E
      g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
      //#end
    }
    //#end
  }
  let ob = bk.b * T * p.D4 + bk.h * {DH4}u;
  //#for c in C, r in 4
  {
    let row = bk.r0 + 4u * qc{c} + {r}u;
    if (row < T) {
      let inv = 1.0 / lo{c}[{r}];
      dst[ob + row * p.D4 + se{e}] = V4(o{c}_{r}_{e} * inv); //#for e in E
      if (pe == 0u) { aux[bk.bh * T + row] = (mo{c}[{r}] + log2(lo{c}[{r}])) * LN2; }
    }
  }
  //#end
}
//#end

//#if KERNEL == 1
var<workgroup> qt: array<array<V4, {N4}>, {DH}>;     // Q transposed: qt[d][r] = rows 4r..4r+3
var<workgroup> gt: array<array<V4, {N4}>, {DH}>;     // dO transposed
var<workgroup> kr: array<array<V4, {DH4P}>, {KEYS}>; // K tile by rows
var<workgroup> vr: array<array<V4, {DH4P}>, {KEYS}>; // V tile by rows
var<workgroup> dt: array<array<V4, {N4}>, {KEYS}>;   // dS: dt[j][r] = rows 4r..4r+3 at key j
var<workgroup> dd: array<f32, {ROWS}>;               // D_i of the block's rows

// Base-2 logsumexp of rows r..r+3 (clamped to the last row).
fn lse4(base: u32, r: u32, T1: u32) -> vec4f {
  return LOG2E * vec4f(aux[base + min(r, T1)], aux[base + min(r + 1u, T1)],
                       aux[base + min(r + 2u, T1)], aux[base + min(r + 3u, T1)]);
}

// dq_i = scale·Σ_j P_ij (dO_i·v_j − D_i) k_j; stores D_i = dO_i·O_i in aux[1] for attn_bwd_dkv.
@compute @workgroup_size({NT})
fn attn_bwd_dq(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
               @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nw.x;
  if (w >= p.total) { return; }
  let bk = block(w, {ROWS}u);
  let T = p.T;
  let T1 = T - 1u;
  let rs = 3u * p.D4;
  let qb = bk.b * T * rs + bk.h * {DH4}u;
  let kb = qb + p.D4;
  let ob = bk.b * T * p.D4 + bk.h * {DH4}u;
  //#for t in (N4*DH4+NT-1)/NT
  {
    let it = lid + {t*NT}u;
    if (it < {N4*DH4}u) {
      let r = it / {DH4}u;
      let d = it % {DH4}u;
      let i{x} = min(bk.r0 + 4u * r + {x}u, T1); //#for x in 4
      let a{x} = qkv[qb + i{x} * rs + d]; //#for x in 4
      let b{x} = V4(dout[ob + i{x} * p.D4 + d]); //#for x in 4
      qt[4u * d + {x}u][r] = V4(a0[{x}], a1[{x}], a2[{x}], a3[{x}]); //#for x in 4
      gt[4u * d + {x}u][r] = V4(b0[{x}], b1[{x}], b2[{x}], b3[{x}]); //#for x in 4
    }
  }
  //#end
  //#for t in (ROWS+NT-1)/NT
  {
    let i = lid + {t*NT}u;
    if (i < {ROWS}u) {
      let x = ob + min(bk.r0 + i, T1) * p.D4;
      var s = 0.0;
      s += dot(vec4f(dout[x + {d}u]), vec4f(outr[x + {d}u])); //#for d in DH4
      dd[i] = s;
      if (bk.r0 + i < T) { aux[p.BHT + bk.bh * T + bk.r0 + i] = s; }
    }
  }
  //#end
  workgroupBarrier();
  let pb = lid % {NB}u;
  let pa = lid / {NB}u;
  let qa{a} = pa + {a*NA}u; //#for a in A
  let kj{b} = pb + {b*NB}u; //#for b in B
  let pe = lid % {NE}u;
  let pc = lid / {NE}u;
  let qc{c} = pc + {c*NC}u; //#for c in C
  let se{e} = pe + {e*NE}u; //#for e in E
  let ls{a} = lse4(bk.bh * T, bk.r0 + 4u * qa{a}, T1); //#for a in A
  let di{a} = vec4f(dd[4u * qa{a}], dd[4u * qa{a} + 1u], dd[4u * qa{a} + 2u], dd[4u * qa{a} + 3u]); //#for a in A
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  for (var tk = 0u; tk < T; tk += {KEYS}u) {
    workgroupBarrier();
    //#for t in (KEYS*DH4+NT-1)/NT
    {
      let it = lid + {t*NT}u;
      if (it < {KEYS*DH4}u) {
        let j = it / {DH4}u;
        let d = it % {DH4}u;
        let i = kb + min(tk + j, T1) * rs + d;
        kr[j][d] = qkv[i];
        vr[j][d] = qkv[i + p.D4];
      }
    }
    //#end
    workgroupBarrier();
    var h{a}_{b} = V4(); //#for a in A, b in B
    var hp{a}_{b} = V4(); //#for a in A, b in B
    //#if F16
    var f{a}_{b} = vec4f(0.0); //#for a in A, b in B
    var fp{a}_{b} = vec4f(0.0); //#for a in A, b in B
    //#end
    //#for d in DH4
    {
      let k{b} = kr[kj{b}][{d}]; //#for b in B
      let v{b} = vr[kj{b}][{d}]; //#for b in B
      //#for x in 4
      {
        let q{a} = qt[{4*d+x}][qa{a}]; //#for a in A
        let gg{a} = gt[{4*d+x}][qa{a}]; //#for a in A
        h{a}_{b} = fma(V4(k{b}[{x}]), q{a}, h{a}_{b}); //#for a in A, b in B
        hp{a}_{b} = fma(V4(v{b}[{x}]), gg{a}, hp{a}_{b}); //#for a in A, b in B
      }
      //#end
      //#if F16 && ((d+1)%FLD == 0 || d+1 == DH4)
      f{a}_{b} += vec4f(h{a}_{b}); //#for a in A, b in B
      fp{a}_{b} += vec4f(hp{a}_{b}); //#for a in A, b in B
      h{a}_{b} = V4(); //#for a in A, b in B
      hp{a}_{b} = V4(); //#for a in A, b in B
      //#end
    }
    //#end
    //#if !F16
    let f{a}_{b} = h{a}_{b}; //#for a in A, b in B
    let fp{a}_{b} = hp{a}_{b}; //#for a in A, b in B
    //#end
    //#for a in A, b in B
    {
      let pr = select(exp2(f{a}_{b} * p.qs - ls{a}), vec4f(0.0), tk + kj{b} > T1);
      dt[kj{b}][qa{a}] = V4(pr * (fp{a}_{b} - di{a}));
    }
    //#end
    workgroupBarrier();
    //#for j in KEYS
    {
      let s{c} = dt[{j}][qc{c}]; //#for c in C
      let k{e} = kr[{j}][se{e}]; //#for e in E
      {ACC}{c}_{r}_{e} = fma(V4(s{c}[{r}]), k{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
      //#if F16 && ((j+1)%FLK == 0 || j+1 == KEYS)
      o{c}_{r}_{e} += vec4f(g{c}_{r}_{e}); //#for c in C, r in 4, e in E
      g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
      //#end
    }
    //#end
  }
  //#for c in C, r in 4
  {
    let row = bk.r0 + 4u * qc{c} + {r}u;
    if (row < T) {
      dst[qb + row * rs + se{e}] = V4(o{c}_{r}_{e} * p.scale); //#for e in E
    }
  }
  //#end
}
//#end

//#if KERNEL == 2
var<workgroup> kt: array<array<V4, {N4}>, {DH}>;     // K transposed: kt[d][r] = keys 4r..4r+3
var<workgroup> vt: array<array<V4, {N4}>, {DH}>;     // V transposed
var<workgroup> qr: array<array<V4, {DH4P}>, {ROWS}>; // Q tile by rows
var<workgroup> gr: array<array<V4, {DH4P}>, {ROWS}>; // dO tile by rows
var<workgroup> ls: array<f32, {ROWS}>;               // base-2 logsumexp of the tile's rows
var<workgroup> dl: array<f32, {ROWS}>;               // D_i of the tile's rows
var<workgroup> pr: array<array<V4, {N4}>, {ROWS}>;   // P: pr[i][r] = keys 4r..4r+3 of row i
var<workgroup> sr: array<array<V4, {N4}>, {ROWS}>;   // dS, same layout

// dk_j = scale·Σ_i P_ij (dO_i·v_j − D_i) q_i and dv_j = Σ_i P_ij dO_i from one recomputation of P.
@compute @workgroup_size({NT})
fn attn_bwd_dkv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                @builtin(local_invocation_index) lid: u32) {
  let w = wid.x + wid.y * nw.x;
  if (w >= p.total) { return; }
  let bk = block(w, {KEYS}u);
  let T = p.T;
  let T1 = T - 1u;
  let rs = 3u * p.D4;
  let qb = bk.b * T * rs + bk.h * {DH4}u;
  let kb = qb + p.D4;
  let ob = bk.b * T * p.D4 + bk.h * {DH4}u;
  let lb = bk.bh * T;
  //#for t in (N4*DH4+NT-1)/NT
  {
    let it = lid + {t*NT}u;
    if (it < {N4*DH4}u) {
      let r = it / {DH4}u;
      let d = it % {DH4}u;
      let i{x} = kb + min(bk.r0 + 4u * r + {x}u, T1) * rs + d; //#for x in 4
      let a{x} = qkv[i{x}]; //#for x in 4
      let b{x} = qkv[i{x} + p.D4]; //#for x in 4
      kt[4u * d + {x}u][r] = V4(a0[{x}], a1[{x}], a2[{x}], a3[{x}]); //#for x in 4
      vt[4u * d + {x}u][r] = V4(b0[{x}], b1[{x}], b2[{x}], b3[{x}]); //#for x in 4
    }
  }
  //#end
  // Phase 1: key quads ka (owned) × rows ib (streamed); phase 2: key quads kc × dh slots se.
  let pb = lid % {NB}u;
  let pa = lid / {NB}u;
  let ka{a} = pa + {a*NA}u; //#for a in A
  let ib{b} = pb + {b*NB}u; //#for b in B
  let pe = lid % {NE}u;
  let pc = lid / {NE}u;
  let kc{c} = pc + {c*NC}u; //#for c in C
  let se{e} = pe + {e*NE}u; //#for e in E
  var o{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  var u{c}_{r}_{e} = vec4f(0.0); //#for c in C, r in 4, e in E
  //#if F16
  var g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  var y{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
  //#end
  for (var tq = 0u; tq < T; tq += {ROWS}u) {
    workgroupBarrier();
    //#for t in (ROWS*DH4+NT-1)/NT
    {
      let it = lid + {t*NT}u;
      if (it < {ROWS*DH4}u) {
        let i = it / {DH4}u;
        let d = it % {DH4}u;
        let row = min(tq + i, T1);
        qr[i][d] = qkv[qb + row * rs + d];
        gr[i][d] = V4(dout[ob + row * p.D4 + d]);
      }
    }
    //#end
    //#for t in (ROWS+NT-1)/NT
    {
      let i = lid + {t*NT}u;
      if (i < {ROWS}u) {
        let row = min(tq + i, T1);
        ls[i] = aux[lb + row] * LOG2E;
        dl[i] = aux[p.BHT + lb + row];
      }
    }
    //#end
    workgroupBarrier();
    var h{a}_{b} = V4(); //#for a in A, b in B
    var hp{a}_{b} = V4(); //#for a in A, b in B
    //#if F16
    var f{a}_{b} = vec4f(0.0); //#for a in A, b in B
    var fp{a}_{b} = vec4f(0.0); //#for a in A, b in B
    //#end
    //#for d in DH4
    {
      let q{b} = qr[ib{b}][{d}]; //#for b in B
      let gg{b} = gr[ib{b}][{d}]; //#for b in B
      //#for x in 4
      {
        let k{a} = kt[{4*d+x}][ka{a}]; //#for a in A
        let v{a} = vt[{4*d+x}][ka{a}]; //#for a in A
        h{a}_{b} = fma(V4(q{b}[{x}]), k{a}, h{a}_{b}); //#for a in A, b in B
        hp{a}_{b} = fma(V4(gg{b}[{x}]), v{a}, hp{a}_{b}); //#for a in A, b in B
      }
      //#end
      //#if F16 && ((d+1)%FLD == 0 || d+1 == DH4)
      f{a}_{b} += vec4f(h{a}_{b}); //#for a in A, b in B
      fp{a}_{b} += vec4f(hp{a}_{b}); //#for a in A, b in B
      h{a}_{b} = V4(); //#for a in A, b in B
      hp{a}_{b} = V4(); //#for a in A, b in B
      //#end
    }
    //#end
    //#if !F16
    let f{a}_{b} = h{a}_{b}; //#for a in A, b in B
    let fp{a}_{b} = hp{a}_{b}; //#for a in A, b in B
    //#end
    //#for a in A, b in B
    {
      let pv = select(exp2(f{a}_{b} * p.qs - ls[ib{b}]), vec4f(0.0), tq + ib{b} > T1);
      pr[ib{b}][ka{a}] = V4(pv);
      sr[ib{b}][ka{a}] = V4(pv * (fp{a}_{b} - dl[ib{b}]));
    }
    //#end
    workgroupBarrier();
    //#for j in ROWS
    {
      let pp{c} = pr[{j}][kc{c}]; //#for c in C
      let ss{c} = sr[{j}][kc{c}]; //#for c in C
      let gg{e} = gr[{j}][se{e}]; //#for e in E
      let qq{e} = qr[{j}][se{e}]; //#for e in E
      {ACV}{c}_{r}_{e} = fma(V4(pp{c}[{r}]), gg{e}, {ACV}{c}_{r}_{e}); //#for c in C, r in 4, e in E
      {ACC}{c}_{r}_{e} = fma(V4(ss{c}[{r}]), qq{e}, {ACC}{c}_{r}_{e}); //#for c in C, r in 4, e in E
      //#if F16 && ((j+1)%FLK == 0 || j+1 == ROWS)
      u{c}_{r}_{e} += vec4f(y{c}_{r}_{e}); //#for c in C, r in 4, e in E
      o{c}_{r}_{e} += vec4f(g{c}_{r}_{e}); //#for c in C, r in 4, e in E
      y{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
      g{c}_{r}_{e} = V4(); //#for c in C, r in 4, e in E
      //#end
    }
    //#end
  }
  //#for c in C, r in 4
  {
    let key = bk.r0 + 4u * kc{c} + {r}u;
    if (key < T) {
      dst[kb + key * rs + se{e}] = V4(o{c}_{r}_{e} * p.scale); //#for e in E
      dst[kb + p.D4 + key * rs + se{e}] = V4(u{c}_{r}_{e}); //#for e in E
    }
  }
  //#end
}
//#end
