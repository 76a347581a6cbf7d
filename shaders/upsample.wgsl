// Nearest-neighbour upsampling by an integer factor f over NHWC activations (PyTorch
// nn.Upsample(scale_factor=f, mode="nearest")), forward and backward. Its own family rather than
// part of conv.wgsl: a different PyTorch module with its own test, and nothing shared with the
// GEMM path. The backward is a gather (each input element sums its f×f outputs in a fixed
// order), so no atomics.

struct P {
  n: u32, // elements of dst
  H: u32, // input height, width, channels
  W: u32,
  C: u32,
  f: u32,
}

// Bindings (uniform, reads, writes): upsample_fwd (u, x as src, y as dst); upsample_bwd (u, dy
// as src, dx as dst).
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// y [B, H·f, W·f, C] from x [B, H, W, C].
@compute @workgroup_size(WG)
fn upsample_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let Wo = u.W * u.f;
  let Ho = u.H * u.f;
  let c = i % u.C;
  let ox = (i / u.C) % Wo;
  let oy = (i / (u.C * Wo)) % Ho;
  let b = i / (u.C * Wo * Ho);
  dst[i] = src[((b * u.H + oy / u.f) * u.W + ox / u.f) * u.C + c];
}

// dx [B, H, W, C] = Σ over each element's f×f block of dy [B, H·f, W·f, C], row-major order.
@compute @workgroup_size(WG)
fn upsample_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let c = i % u.C;
  let x = (i / u.C) % u.W;
  let y = (i / (u.C * u.W)) % u.H;
  let b = i / (u.C * u.W * u.H);
  let Wo = u.W * u.f;
  let Ho = u.H * u.f;
  var acc = 0.0;
  for (var dy = 0u; dy < u.f; dy++) {
    for (var dx = 0u; dx < u.f; dx++) {
      acc += src[((b * Ho + y * u.f + dy) * Wo + x * u.f + dx) * u.C + c];
    }
  }
  dst[i] = acc;
}
