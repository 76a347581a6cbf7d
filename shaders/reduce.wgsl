// Deterministic reductions: column sums of a row-major [M, N] matrix (bias gradients) and the
// sum of squares of a vector. Every sum runs in a fixed order: one thread per output looping in
// order, or per-workgroup partial sums combined by a fixed tree, then summed by one workgroup.

struct Params {
  m: u32, // column sums: rows summed by each thread (M, or the number of row chunks)
  N: u32, // column sums: columns; sum of squares: elements
  rows: u32, // colsum_partial: rows per chunk; sumsq_partial: elements per workgroup
  parts: u32, // colsum_partial: chunks; sum of squares: number of partial sums
  acc: u32, // colsum_final: 1 = add into the output; sumsq_final: 1 = take the square root
}

@group(0) @binding(0) var<storage, read> a: array<f32>;
@group(0) @binding(1) var<uniform> u: Params;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const WG: u32 = 256u;
var<workgroup> sh: array<f32, 256>;

fn index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * WG; }

// y[s, c] = Σ_{r in chunk s} a[r, c], r increasing; chunk s = rows [s·rows, (s+1)·rows) ∩ [0, M).
@compute @workgroup_size(256)
fn colsum_partial(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= u.parts * u.N) { return; }
  let s = i / u.N;
  let c = i - s * u.N;
  let r0 = s * u.rows;
  let r1 = min(r0 + u.rows, u.m);
  var acc = 0.0;
  for (var r = r0; r < r1; r++) { acc = acc + a[r * u.N + c]; }
  y[i] = acc;
}

// y[c] (= or +=) Σ_{r < m} a[r, c], r increasing (a = the matrix, or the chunk partial sums).
@compute @workgroup_size(256)
fn colsum_final(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let c = index(g, nw);
  if (c >= u.N) { return; }
  var acc = 0.0;
  for (var r = 0u; r < u.m; r++) { acc = acc + a[r * u.N + c]; }
  if (u.acc != 0u) { acc = y[c] + acc; }
  y[c] = acc;
}

// sh[0] = Σ sh[0..256) by a fixed pairwise tree.
fn tree(l: u32) {
  for (var st = WG / 2u; st > 0u; st = st / 2u) {
    workgroupBarrier();
    if (l < st) { sh[l] = sh[l] + sh[l + st]; }
  }
  workgroupBarrier();
}

// y[w] = Σ a² over elements [w·rows, (w+1)·rows): thread l sums l, l+256, … in order.
@compute @workgroup_size(256)
fn sumsq_partial(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nw: vec3u,
  @builtin(local_invocation_index) l: u32,
) {
  let w = wid.x + wid.y * nw.x;
  let start = w * u.rows;
  let end = min(start + u.rows, u.N);
  var acc = 0.0;
  for (var i = start + l; i < end; i += WG) { acc = acc + a[i] * a[i]; }
  sh[l] = acc;
  tree(l);
  if (l == 0u && w < u.parts) { y[w] = sh[0]; }
}

// y[0] = Σ a[0..parts) (the partial sums), or its square root (a norm), one workgroup.
@compute @workgroup_size(256)
fn sumsq_final(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  for (var i = l; i < u.parts; i += WG) { acc = acc + a[i]; }
  sh[l] = acc;
  tree(l);
  if (l == 0u) { y[0] = select(sh[0], sqrt(sh[0]), u.acc != 0u); }
}
