// Muon (Keller Jordan's) for 2-D matrices W [rows, cols] in flat buffers (src/ops/muon.ts): the
// elementwise parts around the Newton–Schulz iteration, whose matrix products are linear.wgsl's.
//   muon_coef:      coef[0] = the gradient's multiplier (clip, and 1/S in mixed precision),
//                   coef[1] = 1 if the step applies (0 after an f16 overflow: skipped)
//   muon_momentum:  buf ← μ·buf + g; X ← g + μ·buf (Nesterov), X = the update, transposed when
//                   rows > cols (so that X·Xᵀ is the smaller Gram matrix), g = coef[0]·grads
//   muon_normalize: X ← X/(‖X‖_F + 1e-7) (the norm from reduce.wgsl)
//   ns_poly:        P ← a·I + b·A + c·AA, so that one Newton–Schulz step X ← a·X + (b·A + c·A·A)·X
//                   is one product X ← P·X (A = X·Xᵀ, AA = A·Aᵀ = A·A: A is symmetric)
//   muon_update:    W ← W·(1 − lr·wd) − lr·scale·O (O = X transposed back, scale √max(1, rows/cols)),
//                   then the EMA (and, mixed precision, the f16 copy) of W
// Nothing is written when coef[1] = 0, except X and the Newton–Schulz scratch.
// Bindings (uniforms, reads, writes): muon_coef (hc, gnorm, coef_w); muon_coef_amp (hc, gnorm,
// amp, coef_amp); muon_momentum (u, h, grads, coef, buf, x); muon_normalize (u, nrm,
// x_n); ns_poly (u, ga, gaa, poly); muon_update (u, h, x_u, coef, params, ema); muon_update_amp
// adds params16.

struct Mat {
  n: u32, // elements rows·cols
  rows: u32, // W's rows (PyTorch's out features); ns_poly: the Gram matrix's side
  cols: u32,
  transposed: u32, // 1: X = Wᵀ-shaped [cols, rows]
  scale: f32, // √max(1, rows/cols)
  a: f32, // the Newton–Schulz coefficients
  b: f32,
  c: f32,
}

struct Hyper {
  lr: f32,
  decay: f32, // 1 − lr·weight_decay (float64 on the host)
  momentum: f32,
  max_norm: f32, // ≤ 0: no clipping
  ema_decay: f32,
  one_minus_ema: f32,
}

@group(0) @binding(0) var<uniform> u: Mat;
@group(0) @binding(1) var<uniform> h: Hyper;
@group(0) @binding(0) var<uniform> hc: Hyper;
@group(0) @binding(1) var<storage, read> gnorm: array<f32>;
@group(0) @binding(2) var<storage, read_write> coef_w: array<f32>;
@group(0) @binding(2) var<storage, read> amp: array<f32>;
@group(0) @binding(3) var<storage, read_write> coef_amp: array<f32>;
@group(0) @binding(2) var<storage, read> grads: array<f32>;
@group(0) @binding(3) var<storage, read> coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> buf: array<f32>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read> nrm: array<f32>;
@group(0) @binding(2) var<storage, read_write> x_n: array<f32>;
@group(0) @binding(1) var<storage, read> ga: array<f32>;
@group(0) @binding(2) var<storage, read> gaa: array<f32>;
@group(0) @binding(3) var<storage, read_write> poly: array<f32>;
@group(0) @binding(2) var<storage, read> x_u: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<f32>;
@group(0) @binding(5) var<storage, read_write> ema: array<f32>;

// The clip multiplier of PyTorch's clip_grad_norm_ (1 when clipping is off).
fn clip(norm: f32) -> f32 {
  if (hc.max_norm > 0.0) { return min(1.0, hc.max_norm / (norm + 1e-6)); }
  return 1.0;
}

// True unless x is ±inf or NaN (by its exponent bits: compilers may fold float comparisons).
fn finite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u; }

@compute @workgroup_size(WG)
fn muon_coef(@builtin(local_invocation_index) l: u32) {
  if (l != 0u) { return; }
  coef_w[0] = clip(gnorm[0]);
  coef_w[1] = 1.0;
}

// Mixed precision: the gradients are those of S·loss (S = amp[0]); norm is theirs.
@compute @workgroup_size(WG)
fn muon_coef_amp(@builtin(local_invocation_index) l: u32) {
  if (l != 0u) { return; }
  let inv = 1.0 / amp[0];
  coef_amp[0] = inv * clip(gnorm[0] * inv);
  coef_amp[1] = select(0.0, 1.0, finite(gnorm[0]));
}

// Where element i of W [rows, cols] sits in X.
fn x_index(i: u32) -> u32 {
  if (u.transposed == 0u) { return i; }
  return (i % u.cols) * u.rows + i / u.cols;
}

@compute @workgroup_size(WG)
fn muon_momentum(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let gi = coef[0] * grads[i];
  var b = buf[i];
  if (coef[1] != 0.0) {
    b = h.momentum * b + gi;
    buf[i] = b;
  }
  x[x_index(i)] = gi + h.momentum * b;
}

@compute @workgroup_size(WG)
fn muon_normalize(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  x_n[i] = x_n[i] / (nrm[0] + 1e-7);
}

@compute @workgroup_size(WG)
fn ns_poly(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let diagonal = select(0.0, u.a, i / u.rows == i % u.rows);
  poly[i] = diagonal + u.b * ga[i] + u.c * gaa[i];
}

// The new value of W's element i (the caller checks coef[1]).
fn updated(i: u32) -> f32 {
  let p = params[i] * h.decay - h.lr * u.scale * x_u[x_index(i)];
  params[i] = p;
  ema[i] = h.ema_decay * ema[i] + h.one_minus_ema * p;
  return p;
}

@compute @workgroup_size(WG)
fn muon_update(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n || coef[1] == 0.0) { return; }
  _ = updated(i);
}

// @section amp (src/ops/muon.ts appends it, with `enable f16;`, only for mixed precision)

@group(0) @binding(6) var<storage, read_write> params16: array<f16>;

@compute @workgroup_size(WG)
fn muon_update_amp(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n || coef[1] == 0.0) { return; }
  params16[i] = f16(updated(i));
}
