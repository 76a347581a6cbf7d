// Linear layers as one GEMM family: C[R,Q] (= or +=) A·B (+ bias[q]), summed over L, with f32
// or f16 operands (f32 accumulation either way) and fused epilogues.
//
//   forward  y  = x·wᵀ + b   R=M  Q=N  L=K   A = x  [M,K] "rl"   B = w  [N,K] "ql"
//   dX       dx = dy·w        R=M  Q=K  L=N   A = dy [M,N] "rl"   B = w  [N,K] "lq"
//   dW       dw = dyᵀ·x       R=N  Q=K  L=M   A = dy [M,N] "lr"   B = x  [M,K] "lq"
//
// src/ops/linear.ts generates most of the kernel text into the {{PLACEHOLDERS}} per shape and
// tiling: shapes are constants, the BK-long inner product is unrolled, each thread's output tile
// lives in named registers, because Deno's WebGPU bounds-checks every dynamically indexed array
// (a min() per access) and bounds every runtime loop. The workgroup tiles are 3D arrays
// [buffer][l][x] whose l index is a literal in the unrolled product and whose x index is the
// same per thread for the whole loop (the clamp can be hoisted, each load base + constant), or
// flat arrays with a clamp per load ("flat": faster on the H200 all the same, for reasons the
// bench's --probe is there to find).
//
// f16 accumulation (operands f16, accumulators f32): the products and their running sums are f16
// for CHUNK reduction steps (form "splat": 4 outputs a vec4<f16> lane each, a(row) splatted
// times a vec4 of B; form "pair": a vec2<f16> per output whose lanes take the even and the odd
// l of a pair; form "swap": a vec4 of 4 rows of A times a vec4 of 4 columns of B with its lanes
// permuted (b, b.yxwz, b.zwxy, b.wzyx), so each lane is one output of a 4×4 block's diagonal;
// pair and swap multiply whole registers, no splat), then added into f32 accumulators (registers,
// or with "wacc" the thread's own slots of a workgroup array) and zeroed. So each f16 lane sums
// at most CHUNK (splat, swap) or CHUNK/2 (pair) products, CHUNK a few dozen at most; everything
// after (bias, epilogue, split-K sums) is f32, and an f16 output is rounded once at the store.
//
// Sections ("// @section NAME") are specialised separately.

// @section gemm
//
// Block tile BM×BN over the workgroup's threads. A thread owns RG groups of 4 rows (groups 4·WY
// apart) by CG groups of 4 columns (4·WX apart). The next tile is read from global memory into
// registers (p*) while this one is multiplied; transposition happens on the way into workgroup
// memory. Split-K (workgroup_id.z = split) writes f32 partial sums at part[z·R·Q..]; the reduce
// section sums them in split order and applies the epilogue.

{{ENABLE}}
{{BINDINGS}}

const R: u32 = {{R}}u;
const Q: u32 = {{Q}}u;
const L: u32 = {{L}}u;
const BK: u32 = {{BK}}u;
// Reduction length per split (a multiple of BK; L when not split).
const KPER: u32 = {{KPER}}u;

// Workgroup tiles As, Bs (or As0, As1, Bs0, Bs1: one variable per buffer).
{{SHARED}}
{{HELPERS}}

@compute @workgroup_size({{THREADS}})
fn gemm(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) t: u32) {
{{THREAD}}
  // Block tile origin (rows r0, columns q0); large grids walk the tiles in groups of rows
  // so that workgroups running together share their B tiles in L2.
{{ORIGIN}}
  let lbegin = wg.z * KPER;
  let ntiles = (min(L, lbegin + KPER) - lbegin + BK - 1u) / BK;
{{DECLS}}
{{MAIN}}
{{EPILOGUE}}
}

// @section reduce
//
// Split-K: v = Σ_s part[s] in split order, plus bias, then the epilogue. One thread per group
// of 4 output columns of a row.

{{ENABLE}}
@group(0) @binding(0) var<storage, read> part: array<{{PT}}>;
{{BINDINGS}}

const R: u32 = {{R}}u;
const Q: u32 = {{Q}}u;
// Groups of 4 columns per row, and threads in all.
const QG: u32 = {{QG}}u;
const COUNT: u32 = {{COUNT}}u;
const SPLITS: u32 = {{SPLITS}}u;
const RQ: u32 = {{RQ}}u;
{{HELPERS}}

@compute @workgroup_size(256)
fn reduce_splits(@builtin(global_invocation_id) g: vec3u, @builtin(num_workgroups) nw: vec3u) {
  let i = g.x + g.y * nw.x * 256u;
  if (i >= COUNT) { return; }
  let row = i / QG;
  let col = (i % QG) * 4u;
  let e = row * Q + col;
{{SUM}}
  put(row, col, v);
}

// @section activation
//
// GELU (tanh approximation) and its derivative, the same expressions as shaders/elementwise.wgsl;
// tanh from one exp of a non-positive argument (no overflow for any input).

const GELU_C: f32 = 0.7978845608028654; // sqrt(2/pi)

fn tanh_safe4(u: vec4f) -> vec4f {
  let e = exp(-2.0 * abs(u));
  return sign(u) * (1.0 - e) / (1.0 + e);
}

fn gelu4(v: vec4f) -> vec4f {
  return 0.5 * v * (1.0 + tanh_safe4(GELU_C * (v + 0.044715 * v * v * v)));
}

fn gelu_grad4(v: vec4f) -> vec4f {
  let th = tanh_safe4(GELU_C * (v + 0.044715 * v * v * v));
  let dth = (1.0 - th * th) * GELU_C * (1.0 + 3.0 * 0.044715 * v * v);
  return 0.5 * (1.0 + th) + 0.5 * v * dth;
}

// @section colsum
//
// db = (db +) column sums of dy [ROWS, COLS] in two fixed-order stages: colsum_part sums CHUNK
// rows per thread into part[chunk, col] (four interleaved f32 accumulators for memory
// parallelism), colsum_final sums the chunks of a column in order. {{S}} is the source element
// (f32/f16, or a vec4 of 4 columns), {{A}} the f32 accumulator, {{D}} the destination element.

{{ENABLE}}
@group(0) @binding(0) var<storage, read> src: array<{{S}}>;
@group(0) @binding(1) var<storage, read_write> dst: array<{{D}}>;

const ROWS: u32 = {{ROWS}}u;
const COLS: u32 = {{COLS}}u; // in units of {{S}}
const CHUNK: u32 = {{CHUNK}}u; // a multiple of 4
const NCHUNK: u32 = {{NCHUNK}}u;

fn sum_strided(base: u32, n: u32, stride: u32) -> {{A}} {
  var s0 = {{A}}(0.0);
  var s1 = {{A}}(0.0);
  var s2 = {{A}}(0.0);
  var s3 = {{A}}(0.0);
  var j = 0u;
  for (; j + 4u <= n; j += 4u) {
    s0 += {{A}}(src[base + j * stride]);
    s1 += {{A}}(src[base + (j + 1u) * stride]);
    s2 += {{A}}(src[base + (j + 2u) * stride]);
    s3 += {{A}}(src[base + (j + 3u) * stride]);
  }
  for (; j < n; j++) { s0 += {{A}}(src[base + j * stride]); }
  return (s0 + s1) + (s2 + s3);
}

@compute @workgroup_size(64)
fn colsum_part(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  let chunk = g.y;
  if (col >= COLS) { return; }
  let r0 = chunk * CHUNK;
  dst[chunk * COLS + col] = {{D}}(sum_strided(r0 * COLS + col, min(CHUNK, ROWS - r0), COLS));
}

@compute @workgroup_size(64)
fn colsum_final(@builtin(global_invocation_id) g: vec3u) {
  let col = g.x;
  if (col >= COLS) { return; }
  let s = sum_strided(col, NCHUNK, COLS);
{{FINISH}}
}
