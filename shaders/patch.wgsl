// Patch embedding data movement: im2col of a stride-p, kernel-p convolution (forward and
// backward), the positional-embedding add, and DiT's unpatchify (forward and backward).
// Every entry point moves `src` into `dst` (or adds `src` into `dst`), one thread per element
// of `dst`; stride == kernel means each pair of elements maps one to one, so the backward
// entries gather too and no reduction is needed.

struct Params {
  n: u32, // elements of dst
  B: u32,
  C: u32,
  H: u32,
  W: u32,
  p: u32,
}

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;
@group(0) @binding(2) var<uniform> u: Params;

fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * 256u; }

// Image offset of element (b, c, y, x).
fn img_at(b: u32, c: u32, y: u32, x: u32) -> u32 {
  return ((b * u.C + c) * u.H + y) * u.W + x;
}

// cols [B*T, C*p*p] from img [B,C,H,W]: row (b, ph, pw), column (c, kh, kw).
@compute @workgroup_size(256)
fn im2col_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
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
  let c = col / pp;
  let r = col - c * pp;
  let kh = r / u.p;
  let kw = r - kh * u.p;
  dst[i] = src[img_at(b, c, ph * u.p + kh, pw * u.p + kw)];
}

// dimg [B,C,H,W] from dcols [B*T, C*p*p] (the inverse permutation of im2col_fwd).
@compute @workgroup_size(256)
fn im2col_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let x = i % u.W;
  let y = (i / u.W) % u.H;
  let c = (i / (u.W * u.H)) % u.C;
  let b = i / (u.W * u.H * u.C);
  let wp = u.W / u.p;
  let T = (u.H / u.p) * wp;
  let ph = y / u.p;
  let kh = y - ph * u.p;
  let pw = x / u.p;
  let kw = x - pw * u.p;
  let row = b * T + ph * wp + pw;
  let col = (c * u.p + kh) * u.p + kw;
  dst[i] = src[row * (u.C * u.p * u.p) + col];
}

// h [B*T, D] += pos [T, D]: here n = B*T*D and C carries T*D.
@compute @workgroup_size(256)
fn add_pos(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  dst[i] = dst[i] + src[i % u.C];
}

// img [B,C,H,W] from o [B*T, p*p*C] with o's columns ordered (kh, kw, c):
// DiT's x.reshape(B, h, w, p, p, C) -> einsum('nhwpqc->nchpwq') -> reshape(B, C, h*p, w*p).
@compute @workgroup_size(256)
fn unpatchify_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let x = i % u.W;
  let y = (i / u.W) % u.H;
  let c = (i / (u.W * u.H)) % u.C;
  let b = i / (u.W * u.H * u.C);
  let wp = u.W / u.p;
  let T = (u.H / u.p) * wp;
  let ph = y / u.p;
  let kh = y - ph * u.p;
  let pw = x / u.p;
  let kw = x - pw * u.p;
  let row = b * T + ph * wp + pw;
  let col = (kh * u.p + kw) * u.C + c;
  dst[i] = src[row * (u.C * u.p * u.p) + col];
}

// do [B*T, p*p*C] from dimg [B,C,H,W] (the inverse permutation of unpatchify_fwd).
@compute @workgroup_size(256)
fn unpatchify_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let P = u.C * u.p * u.p;
  let wp = u.W / u.p;
  let T = (u.H / u.p) * wp;
  let row = i / P;
  let col = i - row * P;
  let b = row / T;
  let t = row - b * T;
  let ph = t / wp;
  let pw = t - ph * wp;
  let c = col % u.C;
  let r = col / u.C;
  let kh = r / u.p;
  let kw = r - kh * u.p;
  dst[i] = src[img_at(b, c, ph * u.p + kh, pw * u.p + kw)];
}
