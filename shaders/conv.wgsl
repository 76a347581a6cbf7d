// Convolution as im2col + GEMM (src/ops/linear.ts) over channels-last activations: the data
// movement on either side of the GEMM. Activations are NHWC [B, H, W, C], so a convolution's GEMM
// output [B·Ho·Wo, Cout] already is the next NHWC activation; the first layer may read an NCHW
// image directly (nchw = 1) and the layout permutes convert at the model's edges.
//
//   im2col_fwd  cols[(b,oy,ox), (c,ky,kx)] = x[b, oy·s + ky − pad, ox·s + kx − pad, c] (0 outside)
//   col2im_bwd  dx[b,iy,ix,c] (= or +=) Σ_{ky,kx} dcols[(b,oy,ox), (c,ky,kx)] over the (oy, ox)
//               with oy·s + ky − pad = iy: a gather, one thread per dx element, (ky, kx) in order,
//               so it is deterministic without atomics.
//   to_nhwc / to_nchw   channel permutes (each the other's backward).
//
// The column order (c, ky, kx) is PyTorch's Conv2d weight [Cout, Cin, kh, kw] flattened, so the
// weight is the GEMM's [N, K] operand as it is stored.

struct P {
  n: u32, // elements of dst
  B: u32,
  H: u32, // input (image) height, width, channels
  W: u32,
  C: u32,
  Ho: u32, // output height, width
  Wo: u32,
  k: u32, // kernel side
  s: u32, // stride
  pad: u32,
  nchw: u32, // 1: the image side (x or dx) is NCHW instead of NHWC
  acc: u32, // col2im: 1 adds into dst
}

// Bindings (uniform, reads, writes), every entry point: (u, src, dst); col2im with acc = 1
// reads dst too (a read-modify-write output).
@group(0) @binding(0) var<uniform> u: P;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Offset of image element (b, y, x, c) in the image's layout.
fn img_at(b: u32, y: u32, x: u32, c: u32) -> u32 {
  if (u.nchw != 0u) { return ((b * u.C + c) * u.H + y) * u.W + x; }
  return ((b * u.H + y) * u.W + x) * u.C + c;
}

@compute @workgroup_size(WG)
fn im2col_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let kk = u.k * u.k;
  let P = u.C * kk;
  let row = i / P;
  let col = i - row * P;
  let c = col / kk;
  let r = col - c * kk;
  let ky = r / u.k;
  let kx = r - ky * u.k;
  let hw = u.Ho * u.Wo;
  let b = row / hw;
  let t = row - b * hw;
  let oy = t / u.Wo;
  let ox = t - oy * u.Wo;
  // Signed arithmetic: the padding makes the first rows and columns negative.
  let iy = i32(oy * u.s + ky) - i32(u.pad);
  let ix = i32(ox * u.s + kx) - i32(u.pad);
  var v = 0.0;
  if (iy >= 0 && ix >= 0 && u32(iy) < u.H && u32(ix) < u.W) {
    v = src[img_at(b, u32(iy), u32(ix), c)];
  }
  dst[i] = v;
}

@compute @workgroup_size(WG)
fn col2im_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  // i indexes dx in its own layout.
  var b: u32;
  var iy: u32;
  var ix: u32;
  var c: u32;
  if (u.nchw != 0u) {
    ix = i % u.W;
    iy = (i / u.W) % u.H;
    c = (i / (u.W * u.H)) % u.C;
    b = i / (u.W * u.H * u.C);
  } else {
    c = i % u.C;
    ix = (i / u.C) % u.W;
    iy = (i / (u.C * u.W)) % u.H;
    b = i / (u.C * u.W * u.H);
  }
  let kk = u.k * u.k;
  let P = u.C * kk;
  var acc = 0.0;
  for (var ky = 0u; ky < u.k; ky++) {
    // oy·s = iy + pad − ky must be a non-negative multiple of s below Ho·s.
    let ny = i32(iy + u.pad) - i32(ky);
    if (ny < 0 || u32(ny) % u.s != 0u) { continue; }
    let oy = u32(ny) / u.s;
    if (oy >= u.Ho) { continue; }
    for (var kx = 0u; kx < u.k; kx++) {
      let nx = i32(ix + u.pad) - i32(kx);
      if (nx < 0 || u32(nx) % u.s != 0u) { continue; }
      let ox = u32(nx) / u.s;
      if (ox >= u.Wo) { continue; }
      let row = (b * u.Ho + oy) * u.Wo + ox;
      acc += src[row * P + c * kk + ky * u.k + kx];
    }
  }
  if (u.acc != 0u) { acc = dst[i] + acc; }
  dst[i] = acc;
}

// dst NHWC [B,H,W,C] from src NCHW [B,C,H,W].
@compute @workgroup_size(WG)
fn to_nhwc(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let c = i % u.C;
  let x = (i / u.C) % u.W;
  let y = (i / (u.C * u.W)) % u.H;
  let b = i / (u.C * u.W * u.H);
  dst[i] = src[((b * u.C + c) * u.H + y) * u.W + x];
}

// dst NCHW [B,C,H,W] from src NHWC [B,H,W,C].
@compute @workgroup_size(WG)
fn to_nchw(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.n) { return; }
  let x = i % u.W;
  let y = (i / u.W) % u.H;
  let c = (i / (u.W * u.H)) % u.C;
  let b = i / (u.W * u.H * u.C);
  dst[i] = src[((b * u.H + y) * u.W + x) * u.C + c];
}
