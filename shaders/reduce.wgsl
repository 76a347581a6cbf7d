// Deterministic reductions of a vector to one number in two fixed-order stages: per-workgroup
// partial sums of a term over a chunk (each thread sums l, l+WG, … in order, then tree_sum),
// then one workgroup sums the partials. Used by the gradient norm (term a², then a square root)
// and the MSE loss (term (a − b)², then times 1/n).
// The TERM placeholder: the summed term of element i; OUT: where partial_sum writes (y, or
// y_after_b when the term reads b). Both specialised by src/ops/reduce.ts.
// Bindings: partial_sum (u, a[, b], partials); final_sum (u, partials, out).

struct Params {
  n: u32, // elements
  chunk: u32, // elements per partial sum (a multiple of WG)
  parts: u32, // number of partial sums
  root: u32, // final_sum: 1 = the square root of the sum, 0 = scale · sum
  scale: f32,
  add: u32, // final_sum: 1 = add the result into y[0] (micro-batches' losses), 0 = write it
}

@group(0) @binding(0) var<uniform> u: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
// The term's second operand (squared difference only).
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
// partial_sum's output when the term reads b.
@group(0) @binding(3) var<storage, read_write> y_after_b: array<f32>;

// OUT[w] = Σ TERM(i) over elements [w·chunk, (w+1)·chunk).
@compute @workgroup_size(WG)
fn partial_sum(
  @builtin(workgroup_id) wid: vec3u,
  @builtin(num_workgroups) nw: vec3u,
  @builtin(local_invocation_index) l: u32,
) {
  let w = wid.x + wid.y * nw.x;
  let start = w * u.chunk;
  let end = min(start + u.chunk, u.n);
  var acc = 0.0;
  for (var i = start + l; i < end; i += WG) { acc = acc + {{TERM}}; }
  let s = tree_sum(acc, l);
  if (l == 0u && w < u.parts) { {{OUT}}[w] = s; }
}

// y[0] = scale·Σ a[0..parts), or its square root (a norm), by one workgroup (add: y[0] +=).
@compute @workgroup_size(WG)
fn final_sum(@builtin(local_invocation_index) l: u32) {
  var acc = 0.0;
  for (var i = l; i < u.parts; i += WG) { acc = acc + a[i]; }
  let s = tree_sum(acc, l);
  if (l == 0u) {
    let r = select(u.scale * s, sqrt(s), u.root != 0u);
    y[0] = select(r, y[0] + r, u.add != 0u);
  }
}
