// Prepended to every op family's WGSL by `shader()` in src/ops/common.ts (linear and attention
// excepted: they tile their own). WG is the TypeScript WORKGROUP_SIZE, specialised in.

// Threads per workgroup of the one-thread-per-element entry points: @workgroup_size(WG).
const WG: u32 = {{WG}}u;

// Flat element index of a 1D launch that `grid()` spread over a 2D grid past 65535 workgroups.
fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * WG; }

// Workgroup scratch of the fixed-order sums below.
var<workgroup> sh: array<vec2f, WG>;

// Σ over the workgroup of each thread's `v` (two sums at once) by a fixed pairwise tree
// (deterministic), returned to every thread. Call from uniform control flow; the scratch is free
// again when it returns (a second call may follow).
fn tree_sum2(v: vec2f, l: u32) -> vec2f {
  sh[l] = v;
  for (var st = WG / 2u; st > 0u; st = st / 2u) {
    workgroupBarrier();
    if (l < st) { sh[l] = sh[l] + sh[l + st]; }
  }
  workgroupBarrier();
  let r = sh[0];
  workgroupBarrier();
  return r;
}

// tree_sum2 of one value per thread.
fn tree_sum(v: f32, l: u32) -> f32 { return tree_sum2(vec2f(v, 0.0), l).x; }
