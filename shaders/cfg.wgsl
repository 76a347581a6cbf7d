// Classifier-free guidance over one batched forward of [cond; null] halves:
// out[i] = v_u + s·(v_c − v_u), with v_c = v[i] and v_u = v[i + n]. Scale 1 copies v_c.

struct P { n: u32, scale: f32 }

@group(0) @binding(0) var<storage, read> v: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> p: P;

@compute @workgroup_size(256)
fn cfg_combine(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= p.n) { return; }
  let vc = v[i];
  if (p.scale == 1.0) {
    out[i] = vc;
    return;
  }
  let vu = v[i + p.n];
  out[i] = vu + p.scale * (vc - vu);
}
