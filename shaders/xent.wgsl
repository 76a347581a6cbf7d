// Softmax cross-entropy of logits [B, C] against integer labels [B]: the mean loss over rows
// (per-row losses, then one workgroup summing them in a fixed order) and its gradient.
// Each row's log-sum-exp subtracts the row maximum first, so no logit overflows exp.

struct P {
  rows: u32, // B
  classes: u32, // C
  inv: f32, // 1/B
  pad: u32,
}

@group(0) @binding(0) var<storage, read> logits: array<f32>;
@group(0) @binding(1) var<storage, read> labels: array<u32>;
@group(0) @binding(2) var<uniform> p: P;
// xent_rows: the per-row losses; xent_bwd: dlogits.
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
// xent_bwd only: the upstream gradient of the mean loss, [1].
@group(0) @binding(4) var<storage, read> dloss: array<f32>;

// xent_mean (its own bindings: the per-row losses in, the mean out).
@group(0) @binding(0) var<storage, read> rowLoss: array<f32>;
@group(0) @binding(1) var<storage, read_write> loss: array<f32>;

const WG: u32 = 256u;
var<workgroup> sh: array<f32, 256>;

fn row_index(g: vec3u, nw: vec3u) -> u32 { return g.x + g.y * nw.x * WG; }

// (max, log Σ exp(x − max)) of row r.
fn lse(r: u32) -> vec2f {
  let base = r * p.classes;
  var m = logits[base];
  for (var c = 1u; c < p.classes; c++) { m = max(m, logits[base + c]); }
  var s = 0.0;
  for (var c = 0u; c < p.classes; c++) { s = s + exp(logits[base + c] - m); }
  return vec2f(m, log(s));
}

// out[r] = log Σ_c exp(logits[r, c]) − logits[r, label r].
@compute @workgroup_size(256)
fn xent_rows(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let r = row_index(g, nw);
  if (r >= p.rows) { return; }
  let l = lse(r);
  out[r] = l.x + l.y - logits[r * p.classes + labels[r]];
}

// loss[0] = inv · Σ rowLoss: thread t sums rows t, t+256, … in order, then a fixed pairwise tree.
@compute @workgroup_size(256)
fn xent_mean(@builtin(local_invocation_index) t: u32) {
  var acc = 0.0;
  for (var r = t; r < p.rows; r += WG) { acc = acc + rowLoss[r]; }
  sh[t] = acc;
  for (var st = WG / 2u; st > 0u; st = st / 2u) {
    workgroupBarrier();
    if (t < st) { sh[t] = sh[t] + sh[t + st]; }
  }
  if (t == 0u) { loss[0] = sh[0] * p.inv; }
}

// out[r, c] = dloss·inv·(softmax(logits[r])_c − [c = label r]), one thread per row.
@compute @workgroup_size(256)
fn xent_bwd(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let r = row_index(g, nw);
  if (r >= p.rows) { return; }
  let l = lse(r);
  let scale = dloss[0] * p.inv;
  let base = r * p.classes;
  let y = labels[r];
  for (var c = 0u; c < p.classes; c++) {
    let prob = exp(logits[base + c] - l.x - l.y);
    out[base + c] = scale * (prob - select(0.0, 1.0, c == y));
  }
}
