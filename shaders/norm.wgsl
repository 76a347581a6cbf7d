// LayerNorm without affine (biased variance, eps from the uniform) fused with adaLN modulate:
//   y[b,t,:] = x̂·(1 + scale[b,:]) + shift[b,:]
// shift and scale are columns of mod [B, nChunks·D] at offsets shiftOff and scaleOff.
// Forward and dx: a team of threads per row, row sums in lane order through workgroup memory.
// dmod: per (b, d), sums over t in a fixed order (4 strided slices combined in order 0..3).
// Mixed precision: the Y placeholder is the element type of y (f16: the next GEMM's operand), DY
// that of dy (f16: a GEMM's dX output); x, mod, the statistics and every sum stay f32.

{{ENABLE}}

struct P {
  rows: u32,      // B·T
  T: u32,
  D: u32,
  modStride: u32, // nChunks·D
  shiftOff: u32,  // shiftChunk·D
  scaleOff: u32,  // scaleChunk·D
  acc: u32,       // dx: 1 adds into dx, 0 overwrites
  dGroups: u32,   // dmod: ceil(D / 64)
  total: u32,     // dmod: B·dGroups workgroups
  eps: f32,
}

// Bindings (uniform, reads, writes):
//   ln_mod_fwd (p, x, mod, y, stats)   ln_mod_bwd_dx (p, x, stats, dy, mod, dx)
//   ln_mod_bwd_dmod (p, x, stats, dy, dmod)
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> mod_f: array<f32>;
@group(0) @binding(2) var<storage, read> stats: array<f32>; // [rows, 2]: mean, rstd
@group(0) @binding(3) var<storage, read_write> y: array<{{Y}}>;
@group(0) @binding(3) var<storage, read> dy: array<{{DY}}>;
@group(0) @binding(4) var<storage, read_write> stats_w: array<f32>;
@group(0) @binding(4) var<storage, read> mod_b: array<f32>;
@group(0) @binding(4) var<storage, read_write> dmod: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

// Forward and dx: a team of TEAM threads per row (WG / TEAM rows per workgroup); lane l holds the
// row's elements l, l + TEAM, … (NE of them, coalesced loads) in registers, so x is read once.
const TEAM: u32 = {{TEAM}}u;
const NE: u32 = {{NE}}u; // ceil(D / TEAM), specialised per D
const ROWS_WG: u32 = WG / TEAM;

var<workgroup> red: array<vec2f, WG>;

// Σ of v over the thread's team, in lane order (fixed); every lane gets it. One barrier: call
// from uniform control flow, and not twice without a barrier between (red is reused).
fn team_sum(v: vec2f, lid: u32) -> vec2f {
  red[lid] = v;
  workgroupBarrier();
  let first = (lid / TEAM) * TEAM;
  var s = vec2f(0.0);
  for (var i = 0u; i < TEAM; i++) { s += red[first + i]; }
  return s;
}

fn row_index(wid: vec3u, nw: vec3u) -> u32 { return wid.x + wid.y * nw.x; }

@compute @workgroup_size(WG)
fn ln_mod_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
              @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nw) * ROWS_WG + lid / TEAM;
  let lane = lid % TEAM;
  let valid = row < p.rows;
  let D = p.D;
  let base = row * D;
  var xs: array<f32, NE>;
  var s = 0.0;
  for (var j = 0u; j < NE; j++) {
    let d = lane + j * TEAM;
    var v = 0.0;
    if (valid && d < D) { v = x[base + d]; }
    xs[j] = v;
    s += v;
  }
  let mean = team_sum(vec2f(s, 0.0), lid).x / f32(D);
  var q = 0.0;
  for (var j = 0u; j < NE; j++) {
    if (lane + j * TEAM < D) {
      let c = xs[j] - mean;
      q += c * c;
    }
  }
  workgroupBarrier(); // every team has read red
  let rstd = inverseSqrt(team_sum(vec2f(q, 0.0), lid).x / f32(D) + p.eps);
  if (!valid) { return; }
  let mb = (row / p.T) * p.modStride;
  for (var j = 0u; j < NE; j++) {
    let d = lane + j * TEAM;
    if (d < D) {
      let xh = (xs[j] - mean) * rstd;
      y[base + d] = {{Y}}(xh * (1.0 + mod_f[mb + p.scaleOff + d]) + mod_f[mb + p.shiftOff + d]);
    }
  }
  if (lane == 0u) {
    stats_w[2u * row] = mean;
    stats_w[2u * row + 1u] = rstd;
  }
}

// dx = rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·(1 + scale).
@compute @workgroup_size(WG)
fn ln_mod_bwd_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                 @builtin(local_invocation_index) lid: u32) {
  let row = row_index(wid, nw) * ROWS_WG + lid / TEAM;
  let lane = lid % TEAM;
  let valid = row < p.rows;
  let D = p.D;
  let base = row * D;
  var mean = 0.0;
  var rstd = 0.0;
  if (valid) {
    mean = stats[2u * row];
    rstd = stats[2u * row + 1u];
  }
  let sb = (row / p.T) * p.modStride + p.scaleOff;
  var xh: array<f32, NE>;
  var gs: array<f32, NE>;
  var s = vec2f(0.0);
  for (var j = 0u; j < NE; j++) {
    let d = lane + j * TEAM;
    var h = 0.0;
    var g = 0.0;
    if (valid && d < D) {
      h = (x[base + d] - mean) * rstd;
      g = f32(dy[base + d]) * (1.0 + mod_b[sb + d]);
    }
    xh[j] = h;
    gs[j] = g;
    s += vec2f(g, g * h);
  }
  let m = team_sum(s, lid) / f32(D);
  if (!valid) { return; }
  for (var j = 0u; j < NE; j++) {
    let d = lane + j * TEAM;
    if (d < D) {
      let v = rstd * (gs[j] - m.x - xh[j] * m.y);
      if (p.acc != 0u) { dx[base + d] += v; } else { dx[base + d] = v; }
    }
  }
}

// dshift[b,d] = Σ_t dy, dscale[b,d] = Σ_t dy·x̂. Workgroup: 64 columns × 4 slices of t.
var<workgroup> part: array<vec2f, 256>;

@compute @workgroup_size(64, 4)
fn ln_mod_bwd_dmod(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
                   @builtin(local_invocation_id) l: vec3u) {
  let w = row_index(wid, nw);
  if (w >= p.total) { return; }
  let b = w / p.dGroups;
  let d = (w % p.dGroups) * 64u + l.x;
  let D = p.D;
  var s = vec2f(0.0);
  if (d < D) {
    for (var t = l.y; t < p.T; t += 4u) {
      let row = b * p.T + t;
      let xh = (x[row * D + d] - stats[2u * row]) * stats[2u * row + 1u];
      let g = f32(dy[row * D + d]);
      s += vec2f(g, g * xh);
    }
  }
  part[l.y * 64u + l.x] = s;
  workgroupBarrier();
  if (l.y == 0u && d < D) {
    let r = ((part[l.x] + part[64u + l.x]) + part[128u + l.x]) + part[192u + l.x];
    let mb = b * p.modStride;
    dmod[mb + p.shiftOff + d] = r.x;
    dmod[mb + p.scaleOff + d] = r.y;
  }
}
