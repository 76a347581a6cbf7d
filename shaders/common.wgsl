// Prepended to every op family's WGSL by `shader()` in src/ops/common.ts (linear and attention
// excepted: they tile their own). WG is the TypeScript WORKGROUP_SIZE, specialised in.

// Threads per workgroup of the one-thread-per-element entry points: @workgroup_size(WG).
const WG: u32 = {{WG}}u;

// Flat element index of a 1D launch that `grid()` spread over a 2D grid past 65535 workgroups.
fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * WG; }

// Workgroup scratch of the fixed-order sum below.
var<workgroup> sh: array<f32, WG>;

// Σ over the workgroup of each thread's `v` by a fixed pairwise tree (deterministic), returned to
// every thread. Call from uniform control flow, at most once per invocation.
fn tree_sum(v: f32, l: u32) -> f32 {
  sh[l] = v;
  for (var st = WG / 2u; st > 0u; st = st / 2u) {
    workgroupBarrier();
    if (l < st) { sh[l] = sh[l] + sh[l + st]; }
  }
  workgroupBarrier();
  return sh[0];
}
