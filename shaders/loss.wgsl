// Flow-matching loss: the interpolant and velocity target, mean squared error (a fixed
// two-stage reduction tree, so the result is bit-identical run to run) and its gradient.

struct Params {
  n: u32, // elements
  chunk: u32, // mse_partial: elements per workgroup (a multiple of 256); flow_target: C·H·W
  parts: u32, // number of partial sums
  c: f32, // mse_final: 1/n; mse_bwd: 2·scale/n
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<storage, read> b: array<f32>;
// mse_final writes the loss in the slot of b (no entry point uses both).
@group(0) @binding(1) var<storage, read_write> res: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
// mse_bwd: the upstream scalar; flow_target: t per sample.
@group(0) @binding(4) var<storage, read> s: array<f32>;
// flow_target only: the velocity target.
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;

const WG: u32 = 256u;
var<workgroup> sh: array<f32, 256>;

fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * WG; }

// sh[0] = Σ sh[0..256) by a fixed pairwise tree.
fn tree(l: u32) {
  for (var st = WG / 2u; st > 0u; st = st / 2u) {
    workgroupBarrier();
    if (l < st) { sh[l] = sh[l] + sh[l + st]; }
  }
  workgroupBarrier();
}

// y[w] = Σ (a−b)² over elements [w·chunk, (w+1)·chunk): thread l sums l, l+256, … in order.
@compute @workgroup_size(256)
fn mse_partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nw: vec3u,
  @builtin(local_invocation_index) l: u32,
) {
  let w = wid.x + wid.y * nw.x;
  let start = w * u.chunk;
  let end = min(start + u.chunk, u.n);
  var acc = 0.0;
  for (var i = start + l; i < end; i += WG) {
    let d = a[i] - b[i];
    acc = acc + d * d;
  }
  sh[l] = acc;
  tree(l);
  if (l == 0u && w < u.parts) { y[w] = sh[0]; }
}

// res[0] = c · Σ a[0..parts) (a = the partial sums), one workgroup.
@compute @workgroup_size(256)
fn mse_final(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  for (var i = l; i < u.parts; i += WG) { acc = acc + a[i]; }
  sh[l] = acc;
  tree(l);
  if (l == 0u) { res[0] = sh[0] * u.c; }
}

// y = c·s[0]·(a − b), c = 2·scale/n.
@compute @workgroup_size(256)
fn mse_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  y[i] = (u.c * s[0]) * (a[i] - b[i]);
}

// a = x1 (data), b = x0 (noise), s = t [B]: y = xt = (1−t)·x0 + t·x1, y2 = x1 − x0.
@compute @workgroup_size(256)
fn flow_target(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let t = s[i / u.chunk];
  let x1 = a[i];
  let x0 = b[i];
  y[i] = (1.0 - t) * x0 + t * x1;
  y2[i] = x1 - x0;
}
