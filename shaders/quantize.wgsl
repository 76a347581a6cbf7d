// Vector quantizer (VQ-VAE, van den Oord et al. 2017) with an EMA codebook: the nearest code of
// each row of z [N, D] by distance GEMM (src/ops/linear.ts, dots = z·Eᵀ) and argmin, the
// straight-through gradient with the commitment term, and the EMA codebook update with dead-code
// restarts. Deterministic: argmin ties go to the lowest code index, and every sum runs in a
// fixed order (rows in order within fixed chunks, chunks in order, fixed workgroup trees).
//
//   vq_code_norms   norms[k] = |e_k|²
//   vq_argmin       one workgroup per row: idx = argmin_k |e_k|² − 2·z·e_k; zq = E[idx]
//   vq_st_bwd       dze = dzq + c·(ze − zq), c = 2β/(N·D): the straight-through gradient plus
//                   that of β·mean((ze − sg(zq))²)
//   vq_count_part   part[chunk, k] = (count, Σ ze) over the chunk's rows assigned to code k
//   vq_ema          one workgroup: counts n_k and sums s_k over the chunks, then
//                     N_k ← γN_k + (1−γ)n_k,  m_k ← γm_k + (1−γ)s_k,
//                     e_k = m_k / N'_k with N'_k = (N_k + ε)/(ΣN + Kε)·ΣN (Laplace smoothing),
//                     unused_k ← n_k > 0 ? 0 : unused_k + 1, and a code unused for `dead`
//                   steps restarts at the encoder output ze[rand[k]]: e_k = m_k = that row,
//                   N_k = 1, unused_k = 0. Writes this step's perplexity and used-code count.

struct P {
  N: u32, // rows
  D: u32, // code dimension
  K: u32, // codes
  rows: u32, // vq_count_part: rows per chunk
  chunks: u32,
  dead: u32, // steps unused before a restart (0: never)
  decay: f32, // γ
  one_minus_decay: f32, // 1 − γ, computed in float64
  eps: f32, // Laplace smoothing ε
  c: f32, // vq_st_bwd: 2β/(N·D)
}

// Bindings by entry point (numbered from 0 without gaps, as src/gpu/kernels.ts binds them):
//   vq_code_norms  u, code, norms_w
//   vq_argmin      u, code, norms, dots, idx_w, zq_w
//   vq_st_bwd      u, ze, zq_r, dzq, dze
//   vq_count_part  u, ze, idx_r, part_w
//   vq_ema         u, ze, part, rand, code_w, cluster, embed_avg, unused, metrics
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> code: array<f32>; // the codebook E [K, D]
@group(0) @binding(1) var<storage, read> ze: array<f32>; // the encoder output [N, D]
@group(0) @binding(2) var<storage, read_write> norms_w: array<f32>;
@group(0) @binding(2) var<storage, read> norms: array<f32>;
@group(0) @binding(2) var<storage, read> zq_r: array<f32>;
@group(0) @binding(2) var<storage, read> idx_r: array<u32>; // the code of each row
@group(0) @binding(2) var<storage, read> part: array<f32>;
@group(0) @binding(3) var<storage, read> dots: array<f32>; // z·Eᵀ [N, K]
@group(0) @binding(3) var<storage, read> dzq: array<f32>;
@group(0) @binding(3) var<storage, read_write> part_w: array<f32>;
@group(0) @binding(3) var<storage, read> rand: array<u32>; // restart rows [K]
@group(0) @binding(4) var<storage, read_write> idx_w: array<u32>;
@group(0) @binding(4) var<storage, read_write> dze: array<f32>;
@group(0) @binding(4) var<storage, read_write> code_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> zq_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> cluster: array<f32>; // EMA cluster sizes N [K]
@group(0) @binding(6) var<storage, read_write> embed_avg: array<f32>; // EMA sums m [K, D]
@group(0) @binding(7) var<storage, read_write> unused: array<f32>; // steps since last use [K]
@group(0) @binding(8) var<storage, read_write> metrics: array<f32>; // (perplexity, codes used)

const AW: u32 = 64u; // vq_argmin workgroup
const EW: u32 = WG; // vq_ema workgroup

@compute @workgroup_size(WG)
fn vq_code_norms(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let k = index(g, nw);
  if (k >= u.K) { return; }
  var s = 0.0;
  for (var d = 0u; d < u.D; d++) {
    let v = code[k * u.D + d];
    s += v * v;
  }
  norms_w[k] = s;
}

var<workgroup> best_d: array<f32, AW>;
var<workgroup> best_k: array<u32, AW>;

@compute @workgroup_size(AW)
fn vq_argmin(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let row = wid.x + wid.y * nw.x;
  if (row >= u.N) { return; }
  // |z|² is the same for every code, so it is left out of the distance.
  var bd = 3.4e38;
  var bk = min(lid, u.K - 1u);
  for (var k = lid; k < u.K; k += AW) {
    let d = norms[k] - 2.0 * dots[row * u.K + k];
    if (d < bd) { bd = d; bk = k; }
  }
  best_d[lid] = bd;
  best_k[lid] = bk;
  workgroupBarrier();
  for (var s = AW / 2u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let od = best_d[lid + s];
      let ok = best_k[lid + s];
      if (od < best_d[lid] || (od == best_d[lid] && ok < best_k[lid])) {
        best_d[lid] = od;
        best_k[lid] = ok;
      }
    }
    workgroupBarrier();
  }
  let k = best_k[0];
  if (lid == 0u) { idx_w[row] = k; }
  for (var d = lid; d < u.D; d += AW) { zq_w[row * u.D + d] = code[k * u.D + d]; }
}

@compute @workgroup_size(WG)
fn vq_st_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.N * u.D) { return; }
  dze[i] = dzq[i] + u.c * (ze[i] - zq_r[i]);
}

// part[(chunk·K + k)·(D+1) ..] = (count, Σ ze[row, 0..D)).
@compute @workgroup_size(WG)
fn vq_count_part(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let t = index(g, nw);
  if (t >= u.chunks * u.K) { return; }
  let chunk = t / u.K;
  let k = t - chunk * u.K;
  let r0 = chunk * u.rows;
  let r1 = min(r0 + u.rows, u.N);
  let o = t * (u.D + 1u);
  var n = 0.0;
  for (var d = 0u; d < u.D; d++) { part_w[o + 1u + d] = 0.0; }
  for (var r = r0; r < r1; r++) {
    if (idx_r[r] == k) {
      n += 1.0;
      for (var d = 0u; d < u.D; d++) { part_w[o + 1u + d] += ze[r * u.D + d]; }
    }
  }
  part_w[o] = n;
}

var<workgroup> red: array<vec3f, EW>;

fn ema_sum(v: vec3f, lid: u32) -> vec3f {
  red[lid] = v;
  workgroupBarrier();
  for (var s = EW / 2u; s > 0u; s >>= 1u) {
    if (lid < s) { red[lid] += red[lid + s]; }
    workgroupBarrier();
  }
  let r = red[0];
  workgroupBarrier();
  return r;
}

@compute @workgroup_size(EW)
fn vq_ema(@builtin(local_invocation_index) lid: u32) {
  let W = u.D + 1u;
  // Pass 1: this step's counts, the EMA statistics, and the totals.
  var acc = vec3f(0.0); // (Σ N_k, Σ n_k·log n_k, codes used)
  for (var k = lid; k < u.K; k += EW) {
    var n = 0.0;
    for (var ch = 0u; ch < u.chunks; ch++) { n += part[(ch * u.K + k) * W]; }
    let nk = u.decay * cluster[k] + u.one_minus_decay * n;
    cluster[k] = nk;
    for (var d = 0u; d < u.D; d++) {
      var s = 0.0;
      for (var ch = 0u; ch < u.chunks; ch++) { s += part[(ch * u.K + k) * W + 1u + d]; }
      embed_avg[k * u.D + d] = u.decay * embed_avg[k * u.D + d] + u.one_minus_decay * s;
    }
    if (n > 0.0) {
      acc += vec3f(nk, n * log(n), 1.0);
      unused[k] = 0.0;
    } else {
      acc += vec3f(nk, 0.0, 0.0);
      unused[k] = unused[k] + 1.0;
    }
  }
  let tot = ema_sum(acc, lid);
  // Pass 2: the smoothed codebook, and restarts of codes unused for too long.
  let total = tot.x;
  let scale = total / (total + f32(u.K) * u.eps);
  for (var k = lid; k < u.K; k += EW) {
    if (u.dead > 0u && unused[k] >= f32(u.dead)) {
      let r = rand[k];
      for (var d = 0u; d < u.D; d++) {
        let v = ze[r * u.D + d];
        code_w[k * u.D + d] = v;
        embed_avg[k * u.D + d] = v;
      }
      cluster[k] = 1.0;
      unused[k] = 0.0;
    } else {
      let nk = (cluster[k] + u.eps) * scale;
      for (var d = 0u; d < u.D; d++) { code_w[k * u.D + d] = embed_avg[k * u.D + d] / nk; }
    }
  }
  if (lid == 0u) {
    // perplexity = exp(−Σ p log p), p = n_k / N: exp(log N − Σ n log n / N).
    let N = f32(u.N);
    metrics[0] = exp(log(N) - tot.y / N);
    metrics[1] = tot.z;
  }
}
