// Gated residual: out = x + gate[b,:]·y, gate being columns gateOff.. of mod [B, nChunks·D].
// Forward and dy: one thread per element. dgate: per (b, d), Σ_t dout·y in a fixed order
// (4 strided slices of t combined in order 0..3).
// Mixed precision: the Y placeholder is the element type of y (the branch output the forward saved)
// and DY that of dy (a GEMM operand); x, dout, mod, out and the sums are f32.

{{ENABLE}}

struct P {
  n: u32,         // B·T·D
  T: u32,
  D: u32,
  modStride: u32, // nChunks·D
  gateOff: u32,   // gateChunk·D
  dGroups: u32,   // dgate: ceil(D / 64)
  total: u32,     // dgate: B·dGroups workgroups
}

// Bindings (uniform, reads, writes):
//   gate_fwd (p, x, y, mod, out)
//   gate_bwd (p, dout, y, mod, dy, dmod): both backward outputs in one pass over dout
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> y: array<{{Y}}>;
@group(0) @binding(3) var<storage, read> mod_f: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> dy: array<{{DY}}>;
@group(0) @binding(5) var<storage, read_write> dmod: array<f32>;

// Column of mod holding the gate of element i of a [B, T, D] tensor.
fn gate_index(i: u32) -> u32 {
  return (i / (p.T * p.D)) * p.modStride + p.gateOff + i % p.D;
}

@compute @workgroup_size(WG)
fn gate_fwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.n) { return; }
  out[i] = x[i] + mod_f[gate_index(i)] * f32(y[i]);
}

var<workgroup> part: array<f32, 256>;

// dy = gate·dout and dgate = Σ_t dout·y together (dout read once): the dmod workgroup layout,
// each thread also writing dy for the elements of its slice.
@compute @workgroup_size(64, 4)
fn gate_bwd(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nw: vec3u,
            @builtin(local_invocation_id) l: vec3u) {
  let w = wid.x + wid.y * nw.x;
  if (w >= p.total) { return; }
  let b = w / p.dGroups;
  let d = (w % p.dGroups) * 64u + l.x;
  let D = p.D;
  var s = 0.0;
  if (d < D) {
    let gate = mod_f[b * p.modStride + p.gateOff + d];
    for (var t = l.y; t < p.T; t += 4u) {
      let i = (b * p.T + t) * D + d;
      let g = dout[i];
      dy[i] = {{DY}}(gate * g);
      s += g * f32(y[i]);
    }
  }
  part[l.y * 64u + l.x] = s;
  workgroupBarrier();
  if (l.y == 0u && d < D) {
    dmod[b * p.modStride + p.gateOff + d] =
      ((part[l.x] + part[64u + l.x]) + part[128u + l.x]) + part[192u + l.x];
  }
}
