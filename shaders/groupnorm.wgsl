// GroupNorm (PyTorch nn.GroupNorm: biased variance, per-channel affine) over NHWC activations
// x [B, S, C] (S = H·W), G groups of Cg = C/G consecutive channels; forward and backward.
//
//   gn_fwd         one workgroup per (b, g): mean, then the centred variance (two passes, for
//                  precision), by the prelude's fixed-order tree sums; writes y and stats
//                  [B·G, 2] = (mean, rstd).
//   gn_bwd_dx      one workgroup per (b, g): dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)), ĝ = dy·γ.
//   gn_bwd_param_part / _final   dγ[c] = Σ dy·x̂ and dβ[c] = Σ dy over the B·S rows: chunks of
//                  rows summed in order into part [chunks, C, 2], then the chunks in order.

struct P {
  B: u32,
  S: u32,
  C: u32,
  G: u32,
  Cg: u32,
  acc: u32, // gn_bwd_dx: 1 adds into dx
  rows: u32, // param partials: rows per chunk
  chunks: u32, // param partials: number of chunks
  eps: f32,
}

// Bindings (uniform, reads, writes):
//   gn_fwd (u, x, gamma, beta, y, stats_w)     gn_bwd_dx (u, x, gamma, stats, dy, dx)
//   gn_bwd_param_part (u, x, stats_p, dy_p, part_w)   gn_bwd_param_final (u, part_r, dgamma, dbeta)
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> part_r: array<vec2f>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(2) var<storage, read> stats_p: array<f32>;
@group(0) @binding(2) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>; // [B·G, 2]: mean, rstd
@group(0) @binding(3) var<storage, read> dy_p: array<f32>;
@group(0) @binding(3) var<storage, read_write> dbeta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> part_w: array<vec2f>;
@group(0) @binding(5) var<storage, read_write> stats_w: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

// Offset of the j-th element of group g of sample b (j = s·Cg + channel within the group).
fn at(b: u32, g: u32, j: u32) -> u32 {
  let s = j / u.Cg;
  return (b * u.S + s) * u.C + g * u.Cg + (j - s * u.Cg);
}

@compute @workgroup_size(WG)
fn gn_fwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
          @builtin(local_invocation_index) lid: u32) {
  let bg = wid.x + wid.y * nw.x;
  if (bg >= u.B * u.G) { return; }
  let b = bg / u.G;
  let g = bg - b * u.G;
  let n = u.S * u.Cg;
  var s = 0.0;
  for (var j = lid; j < n; j += WG) { s += x[at(b, g, j)]; }
  let mean = tree_sum(s, lid) / f32(n);
  var v = 0.0;
  for (var j = lid; j < n; j += WG) {
    let d = x[at(b, g, j)] - mean;
    v += d * d;
  }
  let rstd = inverseSqrt(tree_sum(v, lid) / f32(n) + u.eps);
  for (var j = lid; j < n; j += WG) {
    let i = at(b, g, j);
    let c = i % u.C;
    y[i] = (x[i] - mean) * rstd * gamma[c] + beta[c];
  }
  if (lid == 0u) {
    stats_w[2u * bg] = mean;
    stats_w[2u * bg + 1u] = rstd;
  }
}

@compute @workgroup_size(WG)
fn gn_bwd_dx(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
             @builtin(local_invocation_index) lid: u32) {
  let bg = wid.x + wid.y * nw.x;
  if (bg >= u.B * u.G) { return; }
  let b = bg / u.G;
  let g = bg - b * u.G;
  let n = u.S * u.Cg;
  let mean = stats[2u * bg];
  let rstd = stats[2u * bg + 1u];
  var s = vec2f(0.0);
  for (var j = lid; j < n; j += WG) {
    let i = at(b, g, j);
    let gh = dy[i] * gamma[i % u.C];
    s += vec2f(gh, gh * (x[i] - mean) * rstd);
  }
  let m = tree_sum2(s, lid) / f32(n);
  for (var j = lid; j < n; j += WG) {
    let i = at(b, g, j);
    let xh = (x[i] - mean) * rstd;
    let v = rstd * (dy[i] * gamma[i % u.C] - m.x - xh * m.y);
    if (u.acc != 0u) { dx[i] += v; } else { dx[i] = v; }
  }
}

// part[chunk, c] = (Σ dy·x̂, Σ dy) over the chunk's rows, rows in order.
@compute @workgroup_size(WG)
fn gn_bwd_param_part(@builtin(global_invocation_id) gid: vec3u,
                     @builtin(num_workgroups) nw: vec3u) {
  let t = index(gid, nw);
  if (t >= u.chunks * u.C) { return; }
  let chunk = t / u.C;
  let c = t - chunk * u.C;
  let g = c / u.Cg;
  let r0 = chunk * u.rows;
  let r1 = min(r0 + u.rows, u.B * u.S);
  var s = vec2f(0.0);
  for (var r = r0; r < r1; r++) {
    let st = 2u * ((r / u.S) * u.G + g);
    let i = r * u.C + c;
    let d = dy_p[i];
    s += vec2f(d * (x[i] - stats_p[st]) * stats_p[st + 1u], d);
  }
  part_w[t] = s;
}

@compute @workgroup_size(WG)
fn gn_bwd_param_final(@builtin(global_invocation_id) gid: vec3u) {
  let c = gid.x;
  if (c >= u.C) { return; }
  var s = vec2f(0.0);
  for (var k = 0u; k < u.chunks; k++) { s += part_r[k * u.C + c]; }
  dgamma[c] = s.x;
  dbeta[c] = s.y;
}
