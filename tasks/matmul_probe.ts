/**
 * Micro-probes for `tasks/matmul_bench.ts --probe`: small compute-bound WGSL kernels that isolate
 * what a GEMM's inner loop spends its time on, on the card at hand through Deno's WebGPU.
 *
 *   fma  FMA throughput: f32 vec4, f16 vec4 / vec2 with both multiplicands registers, and the
 *        f16 forms the GEMM uses (a lane splatted from a register, a splatted constant, lanes
 *        permuted as in the "swap" form), 16 or 32 independent accumulators
 *   cvt  the f16 → f32 flush: f16 FMAs whose sums are added into f32 accumulators every step
 *        (conversion-bound), every 16 steps (the GEMM's chunk 16) and every 64
 *   lds  workgroup-memory loads in the GEMM's pattern (a thread reads 2 vec4 of A rows and 2 of
 *        B columns per reduction step, 16 steps per tile, one barrier per tile) feeding one FMA
 *        per load: f32 vec4 (16 bytes) against f16 vec4 (8 bytes) and a 16-byte f16 load
 *        (mat2x4<f16>), 3D arrays (literal step index) against flat ones (a clamp per load)
 *
 * Each kernel reads its operands from a buffer (nothing folds at compile time) and stores its sums
 * under a condition that never holds (nothing is dead code).
 */

/** One probe kernel: `work` units (flops, conversions or loads) per thread per dispatch. */
export interface ProbeKernel {
  group: "fma" | "cvt" | "lds";
  name: string;
  code: string;
  threads: number;
  workgroups: number;
  work: number;
  unit: "flop" | "cvt" | "load";
  /** Bytes per load (lds probes). */
  bytes?: number;
}

/** Workgroups per probe dispatch: 32 per SM of a 132-SM card, plenty for any occupancy. */
const WORKGROUPS = 4224;

const HEAD = `@group(0) @binding(0) var<storage, read_write> io: array<vec4f>;
`;

/** The kernel frame: seed values, declarations, a loop of `iters` bodies, a live-keeping store. */
function frame(
  threads: number,
  decls: string,
  iters: number,
  body: string,
  result: string,
  shared = "",
): string {
  const f16 = (shared + decls + body).includes("f16");
  return `${f16 ? "enable f16;\n" : ""}${HEAD}${shared}
@compute @workgroup_size(${threads})
fn main(@builtin(global_invocation_id) gid: vec3u, @builtin(local_invocation_index) t: u32) {
  let seed = io[t % 64u];
${decls}
  for (var i = 0u; i < ${iters}u; i++) {
${body}
  }
  let r = ${result};
  if (r.x == 1234.5678) { io[64u + gid.x % 64u] = r; }
}
`;
}

type Form = "vec" | "splat" | "const" | "swap";

/** A vector of type `ty` (f32 or f16 lanes) with every lane the f32 expression `v`. */
const splat = (ty: string, v: string) =>
  `${ty}(${ty.startsWith("vec2") ? "vec2f" : "vec4f"}(${v}))`;
const PERMS = ["xyzw", "yxwz", "zwxy", "wzyx"];

/**
 * s_j = fma(X(s_j'), b, s_j) for n accumulators: j' pairs the two halves, so each step's
 * products depend on the step before (nothing hoists) with n/2 independent chains of depth 2.
 * X: the vector itself, a lane splatted, a splatted constant (then fma(C, s_j', s_j)), or the
 * vector with its lanes permuted. Optional f32 flush every `every` steps (0: none).
 */
function fmaBody(ty: string, n: number, form: Form, steps: number, every: number): string {
  const w = ty.startsWith("vec2") ? 2 : 4;
  let body = "";
  for (let st = 0; st < steps; st++) {
    for (let j = 0; j < n; j++) {
      const jp = j < n / 2 ? j + n / 2 : j - n / 2;
      const x = `s${jp}`;
      const prod = form === "vec"
        ? `fma(${x}, b, s${j})`
        : form === "splat"
        ? `fma(${ty}(${x}.${"xyzw"[j % w]}), b, s${j})`
        : form === "const"
        ? `fma(${ty}(${ty.includes("f16") ? "0.000244h" : "0.000244"}), ${x}, s${j})`
        : `fma(${x}.${PERMS[j % 4]}, b, s${j})`;
      body += `    s${j} = ${prod};\n`;
    }
    if (every > 0 && (st + 1) % every === 0) {
      for (let j = 0; j < n; j++) {
        body += `    c${j} += vec4f(s${j});\n    s${j} = ${splat(ty, "seed.z")};\n`;
      }
    }
  }
  return body;
}

function fmaKernel(
  name: string,
  ty: string,
  n: number,
  form: Form,
  opts: { every?: number; group?: "fma" | "cvt"; unit?: "flop" | "cvt" } = {},
): ProbeKernel {
  const every = opts.every ?? 0;
  const w = ty.startsWith("vec2") ? 2 : 4;
  const steps = every > 1 ? every : 4; // steps unrolled per loop iteration
  const iters = Math.round(2048 / steps);
  let decls = `  let b = ${splat(ty, "seed.y * 0.000244")};\n`;
  for (let j = 0; j < n; j++) {
    decls += `  var s${j} = ${splat(ty, `seed.x + ${(0.01 * j).toFixed(2)}`)};\n`;
    if (every) decls += `  var c${j} = vec4f(0.0);\n`;
  }
  const widen = (v: string) => w === 2 ? `vec4f(vec2f(${v}), 0.0, 0.0)` : `vec4f(${v})`;
  const terms = Array.from({ length: n }, (_, j) => every ? `c${j}` : widen(`s${j}`));
  const body = fmaBody(ty, n, form, steps, every);
  const totalSteps = iters * steps;
  const unit = opts.unit ?? "flop";
  return {
    group: opts.group ?? "fma",
    name,
    code: frame(256, decls, iters, body, terms.join(" + ")),
    threads: 256,
    workgroups: WORKGROUPS,
    // flops: 2 per lane per fma; conversions: w per accumulator per flush.
    work: unit === "flop" ? totalSteps * n * w * 2 : (totalSteps / every) * n * w,
    unit,
  };
}

/**
 * Workgroup loads in the GEMM's pattern: 128 threads (8 columns × 16 rows of threads), tiles
 * A [2][16][32] and B [2][16][16] of 4-lane elements (128×64 outputs, 16 steps, 2 buffers), per
 * step a0 = A[buf][k][ty], a1 = A[buf][k][ty + 16], b0 = B[buf][k][tx], b1 = B[buf][k][tx + 8],
 * two FMAs, a barrier per 16 steps. "h8": 16-byte f16 elements (mat2x4<f16>, 8 rows or columns),
 * one load each of A and B per step carrying the same 8 + 8 halves as the 4 vec4<f16> loads.
 */
function ldsKernel(name: string, prec: "f32" | "f16", layout: "3d" | "flat" | "h8"): ProbeKernel {
  const el = prec === "f32" ? "vec4f" : layout === "h8" ? "mat2x4<f16>" : "vec4<f16>";
  const acc = prec === "f32" ? "vec4f" : "vec4<f16>";
  const na = layout === "h8" ? 16 : 32, nb = layout === "h8" ? 8 : 16;
  const shared = layout === "flat"
    ? `var<workgroup> A: array<${el}, ${2 * 16 * na}>;\nvar<workgroup> B: array<${el}, ${
      2 * 16 * nb
    }>;\n`
    : `var<workgroup> A: array<array<array<${el}, ${na}>, 16>, 2>;\n` +
      `var<workgroup> B: array<array<array<${el}, ${nb}>, 16>, 2>;\n`;
  const at = (arr: string, n: number, k: number, x: string) =>
    layout === "flat" ? `${arr}[buf * ${16 * n}u + ${k * n}u + ${x}]` : `${arr}[buf][${k}u][${x}]`;
  const value = (sw: string) =>
    layout === "h8" ? `${el}(${acc}(seed), ${acc}(seed.${sw}))` : `${el}(${acc}(seed))`;
  const fillOne = (arr: string, n: number, sw: string) =>
    `  for (var e = t; e < ${2 * 16 * n}u; e += 128u) { ${
      layout === "flat" ? `${arr}[e]` : `${arr}[e / ${16 * n}u][e / ${n}u % 16u][e % ${n}u]`
    } = ${value(sw)}; }\n`;
  const fill = fillOne("A", na, "yxwz") + fillOne("B", nb, "zwxy");
  const decls = `  let tx = t % 8u;\n  let ty = t / 8u;\n${fill}  workgroupBarrier();\n` +
    `  var acc0 = ${acc}(0.0);\n  var acc1 = ${acc}(0.0);\n`;
  let body = `    let buf = i & 1u;\n`;
  for (let k = 0; k < 16; k++) {
    if (layout === "h8") {
      body += `    { let a = ${at("A", na, k, "ty")}; let b = ${at("B", nb, k, "tx")};\n` +
        `      acc0 = fma(a[0], b[0], acc0); acc1 = fma(a[1], b[1], acc1); }\n`;
    } else {
      body +=
        `    { let a0 = ${at("A", na, k, "ty")}; let a1 = ${
          at("A", na, k, "ty + 16u")
        };\n      let b0 = ${at("B", nb, k, "tx")}; let b1 = ${at("B", nb, k, "tx + 8u")};\n` +
        `      acc0 = fma(a0, b0, acc0); acc1 = fma(a1, b1, acc1); }\n`;
    }
  }
  body += `    workgroupBarrier();\n`;
  const iters = 256;
  const loads = layout === "h8" ? 2 : 4;
  return {
    group: "lds",
    name,
    code: frame(128, decls, iters, body, `vec4f(acc0) + vec4f(acc1)`, shared),
    threads: 128,
    workgroups: 2 * WORKGROUPS,
    work: iters * 16 * loads,
    unit: "load",
    bytes: prec === "f32" || layout === "h8" ? 16 : 8,
  };
}

/** Every probe kernel, in report order; `workgroups` overrides the grid (smoke tests). */
export function probeKernels(workgroups?: number): ProbeKernel[] {
  const all = [
    fmaKernel("f32 vec4, 16 accumulators", "vec4f", 16, "vec"),
    fmaKernel("f32 vec4, 32 accumulators", "vec4f", 32, "vec"),
    fmaKernel("f32 vec4, a lane splatted (GEMM form)", "vec4f", 16, "splat"),
    fmaKernel("f16 vec4, 16 accumulators", "vec4<f16>", 16, "vec"),
    fmaKernel("f16 vec4, 32 accumulators", "vec4<f16>", 32, "vec"),
    fmaKernel("f16 vec2, 32 accumulators", "vec2<f16>", 32, "vec"),
    fmaKernel("f16 vec4, a lane splatted (splat form)", "vec4<f16>", 16, "splat"),
    fmaKernel("f16 vec4, a constant splatted", "vec4<f16>", 16, "const"),
    fmaKernel("f16 vec4, lanes permuted (swap form)", "vec4<f16>", 16, "swap"),
    fmaKernel("f16 vec4 + f32 flush every step", "vec4<f16>", 16, "vec", {
      every: 1,
      group: "cvt",
      unit: "cvt",
    }),
    fmaKernel("f16 vec4 + f32 flush every 16 steps", "vec4<f16>", 16, "vec", {
      every: 16,
      group: "cvt",
    }),
    fmaKernel("f16 vec4 + f32 flush every 64 steps", "vec4<f16>", 16, "vec", {
      every: 64,
      group: "cvt",
    }),
    fmaKernel("f16 swap + f32 flush every 16 steps", "vec4<f16>", 16, "swap", {
      every: 16,
      group: "cvt",
    }),
    ldsKernel("f32 vec4, 3D arrays", "f32", "3d"),
    ldsKernel("f32 vec4, flat arrays", "f32", "flat"),
    ldsKernel("f16 vec4 (8 B), 3D arrays", "f16", "3d"),
    ldsKernel("f16 vec4 (8 B), flat arrays", "f16", "flat"),
    ldsKernel("f16 mat2x4 (16 B), 3D arrays", "f16", "h8"),
  ];
  return workgroups ? all.map((p) => ({ ...p, workgroups })) : all;
}
