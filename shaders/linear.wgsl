// Linear layers as one GEMM family, fp32: C[R,Q] (= or +=) A·B (+ bias[q]), summed over L.
//
//   forward  y  = x·wᵀ + b   R=M  Q=N  L=K   A = x  [M,K] "rl"   B = w  [N,K] "ql"
//   dX       dx = dy·w        R=M  Q=K  L=N   A = dy [M,N] "rl"   B = w  [N,K] "lq"
//   dW       dw = dyᵀ·x       R=N  Q=K  L=M   A = dy [M,N] "lr"   B = x  [M,K] "lq"
//
// src/ops/linear.ts specialises the {{PLACEHOLDERS}} per shape and variant: shapes are constants,
// the BK-long inner product is unrolled, and each thread's output tile lives in named vec4
// registers, because Deno's WebGPU bounds-checks every dynamically indexed array and bounds every
// runtime loop. The file has three sections ("// @section NAME"), each specialised on its own.

// @section gemm
//
// Block tile BM×BN over WX×WY threads. A thread owns RG groups of 4 rows (groups 4·WY apart) by
// CG vec4 columns (4·WX apart), accumulated in c{row}_{colgroup}. Workgroup tiles hold A
// transposed, As[l][r/4], and B as Bs[l][q/4], double-buffered: one barrier per BK step. The
// next tile is read from global memory into registers (p*) while this one is multiplied; the
// transposition of "rl"/"ql" operands happens on the way into workgroup memory. Split-K
// (workgroup_id.z = split) writes partial sums at c[z·R·Q..]; the reduce section sums them.

{{BINDINGS}}

const R: u32 = {{R}}u;
const Q: u32 = {{Q}}u;
const L: u32 = {{L}}u;
const BK: u32 = {{BK}}u;
const WX: u32 = {{WX}}u;
// Reduction length per split (a multiple of BK; L when not split).
const KPER: u32 = {{KPER}}u;
// vec4s per buffer of each workgroup tile: BK·BM/4 and BK·BN/4.
const ABUF: u32 = {{ABUF}}u;
const BBUF: u32 = {{BBUF}}u;

var<workgroup> As: array<vec4f, {{ABUF2}}>;
var<workgroup> Bs: array<vec4f, {{BBUF2}}>;

@compute @workgroup_size({{THREADS}})
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
  let tx = t % WX;
  let ty = t / WX;
  // Block tile origin (rows r0, columns q0); large grids walk the tiles in groups of rows
  // so that workgroups running together share their B tiles in L2.
{{ORIGIN}}
  let lbegin = wg.z * KPER;
  let ntiles = (min(L, lbegin + KPER) - lbegin + BK - 1u) / BK;
{{DECLS}}
  // Tile 0 into buffer 0.
  {
    let l0 = lbegin;
{{LOAD}}
    let ao = 0u;
    let bo = 0u;
{{STORE}}
  }
  workgroupBarrier();
  for (var i = 0u; i < ntiles; i++) {
    let more = i + 1u < ntiles;
    if (more) {
      let l0 = lbegin + (i + 1u) * BK;
{{LOAD}}
    }
    {
      let ao = (i & 1u) * ABUF;
      let bo = (i & 1u) * BBUF;
{{COMPUTE}}
    }
    if (more) {
      let ao = ((i + 1u) & 1u) * ABUF;
      let bo = ((i + 1u) & 1u) * BBUF;
{{STORE}}
    }
    workgroupBarrier();
  }
{{EPILOGUE}}
}

// @section reduce
//
// Split-K: out = (out +) Σ_s part[s] (+ bias), the splits summed in order. One thread per
// element ({{T}}: f32, or vec4f when the row width is a multiple of 4).

@group(0) @binding(0) var<storage, read> part: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> out: array<{{T}}>;
{{BIAS_DECL}}

const COUNT: u32 = {{COUNT}}u;
const SPLITS: u32 = {{SPLITS}}u;
// Elements of {{T}} per output row (for the bias index).
const ROW: u32 = {{ROW}}u;

@compute @workgroup_size(256)
fn reduce_splits(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= COUNT) { return; }
  var s = part[i];
  for (var j = 1u; j < SPLITS; j++) { s += part[j * COUNT + i]; }
{{FINISH}}
}

// @section colsum
//
// db = (db +) column sums of dy [ROWS, COLS] in two fixed-order stages: colsum_part sums CHUNK
// rows per thread into part[chunk, col] (four interleaved accumulators for memory parallelism),
// colsum_final sums the chunks of a column in order. {{T}} is f32, or vec4f over 4 columns.

@group(0) @binding(0) var<storage, read> src: array<{{T}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{T}}>;

const ROWS: u32 = {{ROWS}}u;
const COLS: u32 = {{COLS}}u; // in units of {{T}}
const CHUNK: u32 = {{CHUNK}}u; // a multiple of 4
const NCHUNK: u32 = {{NCHUNK}}u;

fn sum_strided(base: u32, n: u32, stride: u32) -> {{T}} {
  var s0 = {{T}}(0.0);
  var s1 = {{T}}(0.0);
  var s2 = {{T}}(0.0);
  var s3 = {{T}}(0.0);
  var j = 0u;
  for (; j + 4u <= n; j += 4u) {
    s0 += src[base + j * stride];
    s1 += src[base + (j + 1u) * stride];
    s2 += src[base + (j + 2u) * stride];
    s3 += src[base + (j + 3u) * stride];
  }
  for (; j < n; j++) { s0 += src[base + j * stride]; }
  return (s0 + s1) + (s2 + s3);
}

@compute @workgroup_size(64)
fn colsum_part(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  let chunk = g.y;
  if (col >= COLS) { return; }
  let r0 = chunk * CHUNK;
  dst[chunk * COLS + col] = sum_strided(r0 * COLS + col, min(CHUNK, ROWS - r0), COLS);
}

@compute @workgroup_size(64)
fn colsum_final(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  if (col >= COLS) { return; }
  let s = sum_strided(col, NCHUNK, COLS);
{{FINISH}}
}
