// Pointwise activations: SiLU, GELU (tanh approximation) and ReLU, forward and backward.
// One thread per element. Bindings: forward (p, x, y); backward (p, x, dy, dx).

struct P { n: u32 }

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx: array<f32>;

fn sigmoid(v: f32) -> f32 { return 1.0 / (1.0 + exp(-v)); }

// tanh from one exp of a non-positive argument: no overflow for any input.
fn tanh_safe(u: f32) -> f32 {
  let e = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - e) / (1.0 + e);
}

const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)

@compute @workgroup_size(WG)
fn silu_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  let v = x[i];
  y[i] = v * sigmoid(v);
}

@compute @workgroup_size(WG)
fn silu_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  let v = x[i];
  let s = sigmoid(v);
  dx[i] = dy[i] * s * (1.0 + v * (1.0 - s));
}

@compute @workgroup_size(WG)
fn gelu_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  let v = x[i];
  y[i] = 0.5 * v * (1.0 + tanh_safe(GELU_C * (v + 0.044715 * v * v * v)));
}

@compute @workgroup_size(WG)
fn gelu_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  let v = x[i];
  let th = tanh_safe(GELU_C * (v + 0.044715 * v * v * v));
  let dth = (1.0 - th * th) * GELU_C * (1.0 + 3.0 * 0.044715 * v * v);
  dx[i] = dy[i] * (0.5 * (1.0 + th) + 0.5 * v * dth);
}

@compute @workgroup_size(WG)
fn relu_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  y[i] = max(x[i], 0.0);
}

// PyTorch's convention at 0: the gradient is 0 there.
@compute @workgroup_size(WG)
fn relu_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  dx[i] = select(0.0, dy[i], x[i] > 0.0);
}
