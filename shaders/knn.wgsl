// k-nearest-neighbour manifolds (Kynkäänniemi et al. 2019) from a GEMM of inner products:
// squared distances d² = |q|² + |k|² − 2 q·k, clamped at 0, for a block of b queries against
// N keys. `dots` is [N, b] (key-major, so the threads of a workgroup, one per query, read
// consecutive addresses). Both entry points take a minimum or an order statistic, which do not
// depend on the order of the scan: the results are deterministic.
// Bindings (uniform, reads, writes):
//   knn_kth (p, dots, key_norm, query_norm, kth)
//   knn_cover (p, dots, key_norm, query_norm, key_radius, margin)

struct P {
  n: u32, // keys N
  b: u32, // queries in this block
  k: u32, // knn_kth: the order statistic taken (0 = the smallest), at most MAXK − 1
}

@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> dots: array<f32>;
@group(0) @binding(2) var<storage, read> key_norm: array<f32>;
@group(0) @binding(3) var<storage, read> query_norm: array<f32>;
@group(0) @binding(4) var<storage, read_write> kth: array<f32>; // knn_kth's output
@group(0) @binding(4) var<storage, read> key_radius: array<f32>; // knn_cover: squared radii
@group(0) @binding(5) var<storage, read_write> margin: array<f32>; // knn_cover's output

const MAXK: u32 = 16u;

fn dist2(j: u32, i: u32, qn: f32) -> f32 {
  return max(qn + key_norm[j] - 2.0 * dots[j * p.b + i], 0.0);
}

// kth[i] = the k-th smallest (0-based) squared distance from query i to the keys: with the
// query set as its own keys, k = 3 gives the distance to the 3rd nearest other point.
@compute @workgroup_size(WG)
fn knn_kth(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.b) { return; }
  let qn = query_norm[i];
  // best[0..k] ascending: the k+1 smallest so far (insertion keeps it sorted).
  var best: array<f32, MAXK>;
  for (var s = 0u; s < MAXK; s++) { best[s] = 3.4e38; }
  for (var j = 0u; j < p.n; j++) {
    let d = dist2(j, i, qn);
    if (d < best[p.k]) {
      var s = p.k;
      while (s > 0u && best[s - 1u] > d) {
        best[s] = best[s - 1u];
        s = s - 1u;
      }
      best[s] = d;
    }
  }
  kth[i] = best[p.k];
}

// margin[i] = min_j (d²(query i, key j) − key_radius[j]): ≤ 0 iff query i lies in some key's ball.
@compute @workgroup_size(WG)
fn knn_cover(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= p.b) { return; }
  let qn = query_norm[i];
  var m = 3.4e38;
  for (var j = 0u; j < p.n; j++) { m = min(m, dist2(j, i, qn) - key_radius[j]); }
  margin[i] = m;
}
