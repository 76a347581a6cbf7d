// Flow-matching training signal on the GPU: the interpolant and velocity target of
// src/flow/path.ts (`interpolate`: x_t = (1 − t)·x0 + t·x1, target = x1 − x0), and the gradient of
// the MSE loss. The loss value itself is reduce.wgsl's sum of squared differences.
// Bindings: flow_target (u, x1, x0, t, xt, target); mse_bwd (u, pred, target, dloss, dpred).

struct Params {
  n: u32, // elements
  per: u32, // flow_target: elements per sample (C·H·W)
  c: f32, // mse_bwd: 2·scale/n
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
// flow_target: t per sample; mse_bwd: the upstream gradient of the loss scalar.
@group(0) @binding(3) var<storage, read> s: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read_write> y2: array<f32>;

// a = x1 (data), b = x0 (noise): y = x_t = (1 − t)·x0 + t·x1, y2 = x1 − x0 (flow/path.ts).
@compute @workgroup_size(WG)
fn flow_target(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let t = s[i / u.per];
  let x1 = a[i];
  let x0 = b[i];
  y[i] = (1.0 - t) * x0 + t * x1;
  y2[i] = x1 - x0;
}

// a = pred, b = target: y = dpred = c·s[0]·(pred − target), c = 2·scale/n.
@compute @workgroup_size(WG)
fn mse_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  y[i] = (u.c * s[0]) * (a[i] - b[i]);
}
