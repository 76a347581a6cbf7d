// Vector operations for the ODE solvers (src/flow/vecops.ts).
// lincombK: out = cout·out (only if has_out) + Σ_{j<K} c_j·v_j, for K = 0..7, one thread per
// element. out may be one of the terms (its coefficient goes to cout) since it is read and written
// by the same thread; an out that is not a term is never read (it may hold NaN).
// err_norm: per workgroup, Σ (e/(atol + rtol·max(|x|,|y|)))² over its 256 elements, reduced by a
// fixed tree (deterministic); the host sums the per-workgroup partials in order.

struct P {
  n: u32,
  has_out: u32,
  cout: f32,
  atol: f32,
  rtol: f32,
  c0: f32,
  c1: f32,
  c2: f32,
  c3: f32,
  c4: f32,
  c5: f32,
  c6: f32,
}

@group(0) @binding(0) var<storage, read_write> out: array<f32>;
@group(0) @binding(1) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> v0: array<f32>;
@group(0) @binding(3) var<storage, read> v1: array<f32>;
@group(0) @binding(4) var<storage, read> v2: array<f32>;
@group(0) @binding(5) var<storage, read> v3: array<f32>;
@group(0) @binding(6) var<storage, read> v4: array<f32>;
@group(0) @binding(7) var<storage, read> v5: array<f32>;
@group(0) @binding(8) var<storage, read> v6: array<f32>;

fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * 256u; }

fn base(i: u32) -> f32 {
  var acc = 0.0;
  if (p.has_out != 0u) { acc = p.cout * out[i]; }
  return acc;
}

@compute @workgroup_size(256)
fn lincomb0(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i);
}

@compute @workgroup_size(256)
fn lincomb1(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i];
}

@compute @workgroup_size(256)
fn lincomb2(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i];
}

@compute @workgroup_size(256)
fn lincomb3(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i] + p.c2 * v2[i];
}

@compute @workgroup_size(256)
fn lincomb4(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i] + p.c2 * v2[i] + p.c3 * v3[i];
}

@compute @workgroup_size(256)
fn lincomb5(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i] + p.c2 * v2[i] + p.c3 * v3[i] + p.c4 * v4[i];
}

@compute @workgroup_size(256)
fn lincomb6(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i] + p.c2 * v2[i] + p.c3 * v3[i] + p.c4 * v4[i] +
    p.c5 * v5[i];
}

@compute @workgroup_size(256)
fn lincomb7(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = base(i) + p.c0 * v0[i] + p.c1 * v1[i] + p.c2 * v2[i] + p.c3 * v3[i] + p.c4 * v4[i] +
    p.c5 * v5[i] + p.c6 * v6[i];
}

var<workgroup> red: array<f32, 256>;

// out[workgroup] = Σ over the workgroup's elements of (v0/(atol + rtol·max(|v1|,|v2|)))².
@compute @workgroup_size(256)
fn err_norm(
  @builtin(global_invocation_id) g: vec3u,
  @builtin(local_invocation_index) l: u32,
  @builtin(workgroup_id) w: vec3u,
  @builtin(num_workgroups) nw: vec3u,
) {
  let i = index(g, nw);
  var s = 0.0;
  if (i < p.n) {
    let r = v0[i] / (p.atol + p.rtol * max(abs(v1[i]), abs(v2[i])));
    s = r * r;
  }
  red[l] = s;
  workgroupBarrier();
  for (var k = 128u; k > 0u; k = k >> 1u) {
    if (l < k) { red[l] = red[l] + red[l + k]; }
    workgroupBarrier();
  }
  if (l == 0u) { out[w.x + w.y * nw.x] = red[0]; }
}
