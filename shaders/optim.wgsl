// Optimizer over flat buffers (one thread per element; 2D grids past 65535 workgroups): one fused
// AdamW step with PyTorch clip_grad_norm_ scaling, optionally fused with the EMA update. The
// global gradient norm is reduce.wgsl's sum of squares (square root).
// The per-step scalars come from the uniform `h`, rewritten by the trainer before each step.
// `skip` is a bit per element (bit i%32 of word i/32): set bits are left alone (every buffer),
// for elements another optimizer updates (Muon's matrices, src/ops/muon.ts).
//
// Mixed precision (adamw_amp, amp_update): the gradients were computed from a loss scaled by S
// (dynamic loss scaling). adamw_amp unscales them (1/S) before clipping and Adam, skips the step
// (params, moments, EMA and the f16 copy untouched) when their norm is not finite, computes the
// bias corrections on the GPU from Adam's own step count (steps minus skipped steps, as PyTorch's
// per-parameter step), and writes the f16 weight copy the GEMMs read. amp_update then halves S on
// a skip, or doubles it after `interval` good steps in a row (PyTorch GradScaler).
//
// amp [8] (f32): 0 S (the loss scale of the next step), 1 good steps since S last changed,
// 2 skipped steps in total, 3 the last step was skipped (1/0), 4 its unscaled gradient norm,
// 5 the S it used.

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
  ln_beta1: f32, // ln(beta1), ln(beta2) (float64 on the host): adamw_amp's bias corrections
  ln_beta2: f32,
}

// Bindings (uniforms, reads, writes): adamw (u, h, grads, gnorm, skip, params, m, v); adamw_ema
// adds ema after them; adamw_amp (u, h, grads, gnorm, amp_r, skip_a, params, m, v, ema,
// params16); amp_update (u, gnorm, amp).
@group(0) @binding(0) var<uniform> u: Shape;
@group(0) @binding(1) var<uniform> h: Hyper;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read> gnorm: array<f32>;
@group(0) @binding(4) var<storage, read> skip: array<u32>;
@group(0) @binding(5) var<storage, read_write> params: array<f32>;
@group(0) @binding(6) var<storage, read_write> m: array<f32>;
@group(0) @binding(7) var<storage, read_write> v: array<f32>;
@group(0) @binding(8) var<storage, read_write> ema: array<f32>;

// True when element i belongs to another optimizer.
fn skipped(mask: u32, i: u32) -> bool { return ((mask >> (i & 31u)) & 1u) != 0u; }

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
  if (i >= u.n || skipped(skip[i / 32u], i)) { return; }
  _ = adamw_at(i);
}

@compute @workgroup_size(WG)
fn adamw_ema(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n || skipped(skip[i / 32u], i)) { return; }
  let p = adamw_at(i);
  ema[i] = h.ema_decay * ema[i] + h.one_minus_ema * p;
}

// @section amp (src/ops/optim.ts appends it, with `enable f16;`, only for mixed precision)

@group(0) @binding(4) var<storage, read> amp_r: array<f32>;
@group(0) @binding(5) var<storage, read> skip_a: array<u32>;
@group(0) @binding(6) var<storage, read_write> params_a: array<f32>;
@group(0) @binding(7) var<storage, read_write> m_a: array<f32>;
@group(0) @binding(8) var<storage, read_write> v_a: array<f32>;
@group(0) @binding(9) var<storage, read_write> ema_a: array<f32>;
@group(0) @binding(10) var<storage, read_write> params16: array<f16>;
@group(0) @binding(1) var<storage, read> gnorm_u: array<f32>;
@group(0) @binding(2) var<storage, read_write> amp: array<f32>;

// True unless x is ±inf or NaN (by its exponent bits: compilers may fold float comparisons).
fn finite(x: f32) -> bool { return (bitcast<u32>(x) & 0x7f800000u) != 0x7f800000u; }

// e^x − 1 without cancellation near 0 (|x| < 0.1: Taylor to x^8, error < 1e-10 relative).
fn expm1(x: f32) -> f32 {
  if (abs(x) >= 0.1) { return exp(x) - 1.0; }
  return x * (1.0 + x * (1.0 / 2.0 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 +
    x * (1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0))))))));
}

@compute @workgroup_size(WG)
fn adamw_amp(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n || skipped(skip_a[i / 32u], i)) { return; }
  let scaled = gnorm[0];
  if (!finite(scaled)) { return; } // overflow in the scaled backward: skip the step
  let inv = 1.0 / amp_r[0];
  var coef = inv;
  if (h.max_norm > 0.0) { coef = inv * min(1.0, h.max_norm / (scaled * inv + 1e-6)); }
  // Adam's step: this step's number minus the steps skipped before it (≥ 1).
  let t = h.step - amp_r[2];
  let bc1 = -expm1(t * h.ln_beta1);
  let bc2 = -expm1(t * h.ln_beta2);
  let gi = grads[i] * coef;
  let mi = h.beta1 * m_a[i] + h.one_minus_beta1 * gi;
  let vi = h.beta2 * v_a[i] + h.one_minus_beta2 * gi * gi;
  m_a[i] = mi;
  v_a[i] = vi;
  let denom = sqrt(vi) / sqrt(bc2) + h.eps;
  let p = params_a[i] * h.decay - (h.lr / bc1) * (mi / denom);
  params_a[i] = p;
  params16[i] = f16(p);
  ema_a[i] = h.ema_decay * ema_a[i] + h.one_minus_ema * p;
}

struct Scaler {
  interval: u32, // good steps in a row before S doubles
  growth: f32,
  backoff: f32,
}
@group(0) @binding(0) var<uniform> sc: Scaler;

// After adamw_amp, one thread: the loss scale's bookkeeping (see the header).
@compute @workgroup_size(WG)
fn amp_update(@builtin(local_invocation_index) l: u32) {
  if (l != 0u) { return; }
  let s = amp[0];
  let ok = finite(gnorm_u[0]);
  amp[5] = s;
  amp[4] = gnorm_u[0] / s;
  amp[3] = select(1.0, 0.0, ok);
  if (ok) {
    let good = amp[1] + 1.0;
    if (good >= f32(sc.interval)) {
      amp[0] = s * sc.growth;
      amp[1] = 0.0;
    } else {
      amp[1] = good;
    }
  } else {
    amp[0] = s * sc.backoff;
    amp[1] = 0.0;
    amp[2] = amp[2] + 1.0;
  }
}
