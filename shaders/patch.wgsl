// Patch embedding data movement: im2col of a stride-p, kernel-p convolution (forward and
// backward), the positional-embedding add, and DiT's unpatchify (forward and backward).
// Every entry point moves `src` into `dst` (or adds `src` into `dst`), one thread per element
// of `dst`; stride == kernel means each pair of elements maps one to one, so the backward
// entries gather too and no reduction is needed. Bindings: (u, src, dst).
//
// A patch matrix is [B*T, P] (P = C·p·p), row = token (b, ph, pw) row-major over the patches;
// its columns are (c, kh, kw) for im2col (the conv weight's order) and (kh, kw, c) for DiT's
// unpatchify (x.reshape(B, h, w, p, p, C)).

struct Params {
  n: u32, // elements of dst
  B: u32,
  C: u32, // add_pos: T·D
  H: u32,
  W: u32,
  p: u32,
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Column of channel c, patch offset (kh, kw): channels first (im2col) or last (unpatchify).
fn patch_col(c: u32, kh: u32, kw: u32, channels_last: bool) -> u32 {
  if (channels_last) { return (kh * u.p + kw) * u.C + c; }
  return (c * u.p + kh) * u.p + kw;
}

// Image offset [B,C,H,W] of element i of a patch matrix.
fn image_of_patch(i: u32, channels_last: bool) -> u32 {
  let pp = u.p * u.p;
  let P = u.C * pp;
  let wp = u.W / u.p;
  let T = (u.H / u.p) * wp;
  let row = i / P;
  let col = i - row * P;
  let b = row / T;
  let t = row - b * T;
  let ph = t / wp;
  let pw = t - ph * wp;
  var c = col / pp;
  var r = col - c * pp;
  if (channels_last) {
    c = col % u.C;
    r = col / u.C;
  }
  let kh = r / u.p;
  let kw = r - kh * u.p;
  return ((b * u.C + c) * u.H + ph * u.p + kh) * u.W + pw * u.p + kw;
}

// Patch-matrix offset of element i of an image [B,C,H,W] (the inverse of image_of_patch).
fn patch_of_image(i: u32, channels_last: bool) -> u32 {
  let x = i % u.W;
  let y = (i / u.W) % u.H;
  let c = (i / (u.W * u.H)) % u.C;
  let b = i / (u.W * u.H * u.C);
  let wp = u.W / u.p;
  let T = (u.H / u.p) * wp;
  let ph = y / u.p;
  let pw = x / u.p;
  let row = b * T + ph * wp + pw;
  return row * (u.C * u.p * u.p) + patch_col(c, y - ph * u.p, x - pw * u.p, channels_last);
}

// cols [B*T, C*p*p] from img [B,C,H,W].
@compute @workgroup_size(WG)
fn im2col_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = src[image_of_patch(i, false)];
}

// dimg [B,C,H,W] from dcols [B*T, C*p*p] (col2im; stride = kernel, so a gather).
@compute @workgroup_size(WG)
fn im2col_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = src[patch_of_image(i, false)];
}

// h [B*T, D] += pos [T, D]: here n = B*T*D and C carries T*D.
@compute @workgroup_size(WG)
fn add_pos(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = dst[i] + src[i % u.C];
}

// img [B,C,H,W] from o [B*T, p*p*C]: DiT's einsum('nhwpqc->nchpwq').
@compute @workgroup_size(WG)
fn unpatchify_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = src[patch_of_image(i, true)];
}

// do [B*T, p*p*C] from dimg [B,C,H,W].
@compute @workgroup_size(WG)
fn unpatchify_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = src[image_of_patch(i, true)];
}
