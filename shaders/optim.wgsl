// Optimizer over flat buffers (one thread per element; 2D grids past 65535 workgroups): one fused
// AdamW step with PyTorch clip_grad_norm_ scaling, optionally fused with the EMA update. The
// global gradient norm is reduce.wgsl's sum of squares (square root).
// The per-step scalars come from the uniform `h`, rewritten by the trainer before each step.

struct Shape {
  n: u32, // elements
  pad0: u32,
  pad1: u32,
}

struct Hyper {
  lr: f32,
  beta1: f32,
  beta2: f32,
  eps: f32,
  weight_decay: f32,
  decay: f32, // 1 − lr·weight_decay (computed in float64)
  step_size: f32, // lr / (1 − beta1^step)
  bc2_sqrt: f32, // sqrt(1 − beta2^step)
  max_norm: f32, // ≤ 0: no clipping
  ema_decay: f32,
  step: f32,
  one_minus_beta1: f32, // 1 − beta1, 1 − beta2, 1 − ema_decay: computed in float64
  one_minus_beta2: f32,
  one_minus_ema: f32,
  pad0: f32,
  pad1: f32,
}

// Bindings (uniforms, reads, writes): adamw (u, h, grads, gnorm, params, m, v); adamw_ema adds
// ema after them.
@group(0) @binding(0) var<uniform> u: Shape;
@group(0) @binding(1) var<uniform> h: Hyper;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read> gnorm: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<f32>;
@group(0) @binding(5) var<storage, read_write> m: array<f32>;
@group(0) @binding(6) var<storage, read_write> v: array<f32>;
@group(0) @binding(7) var<storage, read_write> ema: array<f32>;

// One AdamW step of element i (PyTorch semantics); returns the new parameter.
fn adamw_at(i: u32) -> f32 {
  var coef = 1.0;
  if (h.max_norm > 0.0) { coef = min(1.0, h.max_norm / (gnorm[0] + 1e-6)); }
  let g = grads[i] * coef;
  let mi = h.beta1 * m[i] + h.one_minus_beta1 * g;
  let vi = h.beta2 * v[i] + h.one_minus_beta2 * g * g;
  m[i] = mi;
  v[i] = vi;
  let denom = sqrt(vi) / h.bc2_sqrt + h.eps;
  let p = params[i] * h.decay - h.step_size * (mi / denom);
  params[i] = p;
  return p;
}

@compute @workgroup_size(WG)
fn adamw(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  _ = adamw_at(i);
}

@compute @workgroup_size(WG)
fn adamw_ema(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let p = adamw_at(i);
  ema[i] = h.ema_decay * ema[i] + h.one_minus_ema * p;
}
