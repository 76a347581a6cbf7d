// Vector operations of the ODE solvers (src/flow/vecops.ts's VecOps, on the GPU by
// src/ops/vecops.ts). One thread per element.
// lincomb: out = cout·out (only if has_out) + Σ_{j<K} c_j·v_j. The TS side specialises TERMS
// (" + p.c0 * v0[i] + …", K terms) and OUT = K + 1 (the binding after the K inputs). `out` may be
// one of the terms (its coefficient goes to cout): it is read and written by the same thread; an
// `out` that is not a term is never read (it may hold NaN).
// err_norm: per workgroup, Σ (v0/(atol + rtol·max(|v1|,|v2|)))² over its elements, by
// tree_sum (deterministic); the host sums the per-workgroup partials in order.
// Bindings: lincomb (p, v0 … v{K-1}, out); err_norm (p, err, x, y, partials).

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

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> v0: array<f32>;
@group(0) @binding(2) var<storage, read> v1: array<f32>;
@group(0) @binding(3) var<storage, read> v2: array<f32>;
@group(0) @binding(4) var<storage, read> v3: array<f32>;
@group(0) @binding(5) var<storage, read> v4: array<f32>;
@group(0) @binding(6) var<storage, read> v5: array<f32>;
@group(0) @binding(7) var<storage, read> v6: array<f32>;
// lincomb's output, after its K inputs (never used with the input declared at that binding).
@group(0) @binding({{OUT}}) var<storage, read_write> out: array<f32>;
// err_norm's per-workgroup partial sums, after err, x, y.
@group(0) @binding(4) var<storage, read_write> partials: array<f32>;

@compute @workgroup_size(WG)
fn lincomb(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  var acc = 0.0;
  if (p.has_out != 0u) { acc = p.cout * out[i]; }
  out[i] = acc{{TERMS}};
}

// partials[workgroup] = Σ over the workgroup's elements of (v0/(atol + rtol·max(|v1|,|v2|)))².
@compute @workgroup_size(WG)
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
  let total = tree_sum(s, l);
  if (l == 0u) { partials[w.x + w.y * nw.x] = total; }
}
