// Precision casts over flat buffers: f32 → f16 (round to nearest even; beyond ±65504 is out of
// f16's range, which WGSL leaves to the implementation: infinity on common hardware) and f16 → f32
// (exact). One thread per element, or per vec4 of elements when the count allows; the grid is 2D
// when it needs more than 65535 workgroups. {{S}}/{{D}}: source and destination element types.

enable f16;

@group(0) @binding(0) var<storage, read> src: array<{{S}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{D}}>;

// Elements (or vec4s) to convert.
const N: u32 = {{N}}u;

@compute @workgroup_size(WG)
fn convert(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = index(g, nw);
  if (i >= N) { return; }
  dst[i] = {{D}}(src[i]);
}
