// Softmax cross-entropy of logits [B, C] against integer labels [B]: the mean loss over rows
// (per-row losses, then one workgroup summing them in a fixed order) and its gradient.
// Each row's log-sum-exp subtracts the row maximum first, so no logit overflows exp.
// Bindings (uniform, reads, writes):
//   xent_fwd_rows (p, logits, labels, rows)   xent_fwd_mean (p, rows_in, loss)
//   xent_bwd (p, logits, labels, dloss, dlogits)

struct P {
  rows: u32, // B
  classes: u32, // C
  inv: f32, // 1/B
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> rows_in: array<f32>; // xent_fwd_mean: per-row losses
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<storage, read_write> loss: array<f32>; // xent_fwd_mean: [1]
@group(0) @binding(3) var<storage, read_write> rows: array<f32>; // xent_fwd_rows: per-row losses
@group(0) @binding(3) var<storage, read> dloss: array<f32>; // xent_bwd: upstream gradient, [1]
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;

// (max, log Σ exp(x − max)) of row r.
fn lse(r: u32) -> vec2f {
  let base = r * p.classes;
  var m = logits[base];
  for (var c = 1u; c < p.classes; c++) { m = max(m, logits[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.classes; c++) { s = s + exp(logits[base + c] - m); }
  return vec2f(m, log(s));
}

// rows[r] = log Σ_c exp(logits[r, c]) − logits[r, label r], one thread per row.
@compute @workgroup_size(WG)
fn xent_fwd_rows(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let r = index(g, nw);
  if (r >= p.rows) { return; }
  let l = lse(r);
  rows[r] = l.x + l.y - logits[r * p.classes + labels[r]];
}

// loss[0] = inv · Σ rows: thread t sums rows t, t+WG, … in order, then the prelude's fixed tree.
@compute @workgroup_size(WG)
fn xent_fwd_mean(@builtin(local_invocation_index) t: u32) {
  var acc = 0.0;
  for (var r = t; r < p.rows; r += WG) { acc = acc + rows_in[r]; }
  let total = tree_sum(acc, t);
  if (t == 0u) { loss[0] = total * p.inv; }
}

// dlogits[r, c] = dloss·inv·(softmax(logits[r])_c − [c = label r]), one thread per row.
@compute @workgroup_size(WG)
fn xent_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let r = index(g, nw);
  if (r >= p.rows) { return; }
  let l = lse(r);
  let scale = dloss[0] * p.inv;
  let base = r * p.classes;
  let y = labels[r];
  for (var c = 0u; c < p.classes; c++) {
    let prob = exp(logits[base + c] - l.x - l.y);
    dlogits[base + c] = scale * (prob - select(0.0, 1.0, c == y));
  }
}
