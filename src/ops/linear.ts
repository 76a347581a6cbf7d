/**
 * Linear layers (matmul), forward and both backward products, as one register-blocked GEMM
 * generator over shaders/linear.wgsl. Shapes are specialised into the WGSL text and the inner
 * product is unrolled (see the shader's header for the layouts).
 *
 * Variants (opts.variant; the default picks by shape):
 *   "big"    128×64 block tile, 8×16 threads, 8×8 outputs per thread, BK 16 (large M and N)
 *   "wide"   64×128 block tile, 16×8 threads, 8×8 outputs per thread, BK 16 (default for dX)
 *   "mid"    64×64 block tile, 16×16 threads, 4×4 outputs per thread, BK 8
 *   "small"  32×32 block tile, 8×8 threads, 4×4 outputs per thread, BK 16 (small outputs, e.g.
 *            adaLN; split over the reduction by default when the grid is small)
 *   "splitk" the big tile with the reduction split over workgroups (few output tiles and a long
 *            reduction, e.g. dW with L = tokens); partial sums go to a scratch tensor and are
 *            summed in a fixed split order by a second dispatch (deterministic, no atomics)
 *   "scalar" the small tile with scalar global loads and stores (any widths)
 * Global memory is read and written as vec4 when the widths allow (Q and L multiples of 4, or
 * R for dW's transposed A); otherwise every tile falls back to scalar access automatically.
 * `opts.splits` forces a number of splits for any variant.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { specialise } from "../gpu/kernels.ts";
import code from "../../shaders/linear.wgsl" with { type: "text" };

export interface LinearOptions {
  /** Add into the output (+=) instead of overwriting it. */
  accumulate?: boolean;
  /** "big" | "wide" | "mid" | "small" | "splitk" | "scalar"; default: chosen by shape. */
  variant?: string;
  /** Reduction splits (split-K); default: chosen by variant and shape. */
  splits?: number;
  /** Inner-product steps unrolled per loop iteration (default: the whole BK tile). */
  unroll?: number;
  /** Tuning: override the variant's block tiling. */
  tile?: Tile;
  /** Tuning: walk block tiles in groups of this many rows (L2 reuse); 1 = row-major. */
  swizzle?: number;
}

/** A block tiling: BM = 4·rg·wy rows by BN = 4·cg·wx columns, BK reduction steps per tile. */
export interface Tile {
  /** Row groups of 4 and vec4 column groups per thread. */
  rg: number;
  cg: number;
  wx: number;
  wy: number;
  bk: number;
}

const TILES: Record<string, Tile> = {
  big: { rg: 2, cg: 2, wx: 8, wy: 16, bk: 16 },
  wide: { rg: 2, cg: 2, wx: 16, wy: 8, bk: 16 },
  mid: { rg: 1, cg: 1, wx: 16, wy: 16, bk: 8 },
  small: { rg: 1, cg: 1, wx: 8, wy: 8, bk: 16 },
};

/** Workgroups that fill an H100 (132 SMs, about two each); sizes the default grids. */
const TARGET_WORKGROUPS = 264;
/** Split-K scratch limit, in floats (shared by every split-K dispatch of a Kernels). */
const MAX_SCRATCH = 16 * 1024 * 1024;

type ALayout = "rl" | "lr";
type BLayout = "ql" | "lq";

interface Gemm {
  R: number;
  Q: number;
  L: number;
  a: ALayout;
  b: BLayout;
}

interface Plan {
  tile: Tile;
  /** Inner-product steps unrolled per loop iteration (BK: fully unrolled). */
  unroll: number;
  /** Block-tile rows per group of the grid walk (1: row-major). */
  swizzle: number;
  vec: boolean;
  splits: number;
  kper: number;
}

const sections: Record<string, string> = {};
for (const part of code.split(/^\/\/ @section /m).slice(1)) {
  const nl = part.indexOf("\n");
  sections[part.slice(0, nl).trim()] = part.slice(nl + 1);
}

const cdiv = (a: number, b: number) => Math.ceil(a / b);
const blockM = (t: Tile) => t.rg * 4 * t.wy;
const blockN = (t: Tile) => t.cg * 4 * t.wx;

/** True when every global access of this GEMM can be a vec4. */
function vecOk(g: Gemm): boolean {
  return g.Q % 4 === 0 && g.L % 4 === 0 && (g.a === "rl" || g.R % 4 === 0);
}

function plan(g: Gemm, opts: LinearOptions, name: string, cpu: boolean): Plan {
  let variant = opts.variant;
  const vec = vecOk(g) && variant !== "scalar";
  const tiles = (t: Tile) => cdiv(g.R, blockM(t)) * cdiv(g.Q, blockN(t));
  if (variant === undefined) {
    // dX (B row-major [L,Q]) measured faster with the wide tile, the others with the tall one.
    if (tiles(TILES.big) >= 2 * TARGET_WORKGROUPS) {
      variant = g.b === "lq" && g.a === "rl" ? "wide" : "big";
    } else if (g.L >= 2048 && g.R * g.Q >= 256 * 256) variant = "splitk";
    else variant = "small";
  }
  const tileName = variant === "splitk" ? "big" : variant === "scalar" ? "small" : variant;
  let tile = opts.tile ?? TILES[tileName];
  if (!tile) {
    throw new Error(
      `${name}: unknown variant "${variant}" (big, wide, mid, small, splitk, scalar)`,
    );
  }
  // Software adapters (llvmpipe) take minutes to compile shaders with large workgroup memory
  // (its cost grows with the square of the size): same code, half the reduction tile.
  if (cpu && !opts.tile && tile.bk > 8) tile = { ...tile, bk: 8 };
  let splits = opts.splits ?? 1;
  if (opts.splits === undefined && variant === "splitk") {
    // About 4 workgroups per SM slot pair: long dW reductions over tokens.
    splits = Math.min(
      cdiv(4 * TARGET_WORKGROUPS, tiles(tile)),
      Math.max(1, Math.floor(g.L / 256)),
      Math.max(1, Math.floor(MAX_SCRATCH / (g.R * g.Q))),
      64,
    );
  } else if (opts.splits === undefined && variant === "small" && opts.variant === undefined) {
    // Small outputs (adaLN): split the reduction until the grid covers the GPU.
    splits = Math.max(
      1,
      Math.min(cdiv(384, tiles(tile)), Math.floor(g.L / 64), 64),
    );
  }
  if (!Number.isInteger(splits) || splits < 1) throw new Error(`${name}: bad splits ${splits}`);
  const kper = cdiv(cdiv(g.L, splits), tile.bk) * tile.bk;
  splits = cdiv(g.L, kper); // no empty split
  const unroll = opts.unroll ?? tile.bk;
  if (tile.bk % unroll !== 0) {
    throw new Error(`${name}: unroll ${unroll} does not divide ${tile.bk}`);
  }
  // B larger than L2 can keep (square 4096: +2%): walk tiles in groups of 8 rows so concurrent
  // workgroups share B tiles. Not for model weights (it cost qkv's forward a third on an H100).
  const swizzle = opts.swizzle ?? (g.Q * g.L * 4 > 16 * 2 ** 20 ? 8 : 1);
  return { tile, vec, splits, kper, unroll, swizzle };
}

/** Loads of one operand tile into registers p{name}{j}, and their stores to workgroup memory. */
function operand(
  name: "a" | "b",
  ext: number,
  dim: number,
  outerContig: boolean,
  g: Gemm,
  p: Plan,
): { decls: string; load: string; store: string } {
  const { bk } = p.tile;
  const threads = p.tile.wx * p.tile.wy;
  const sh = name === "a" ? "As" : "Bs";
  const off = name === "a" ? "ao" : "bo";
  const x0 = name === "a" ? "r0" : "q0";
  const elems = p.vec ? ext * bk / 4 : ext * bk;
  const per = Math.ceil(elems / threads);
  const ty = p.vec ? "vec4f" : "f32";
  const xCheck = dim % ext !== 0;
  const lCheck = g.L % bk !== 0; // splits hold whole BK tiles, so only the end of L is ragged
  let decls = "", load = "", store = "";
  for (let j = 0; j < per; j++) {
    const reg = `p${name}${j}`;
    decls += `  var ${reg}: ${ty};\n`;
    let idx: string, gi: string, conds: string[], st: string;
    if (p.vec && outerContig) {
      // vec4 along x: tile row l holds ext/4 vec4s; the workgroup layout is the same.
      idx = `let xq = idx % ${ext / 4}u; let l = idx / ${ext / 4}u;`;
      gi = `(l0 + l) * ${dim / 4}u + ${x0} / 4u + xq`;
      conds = [xCheck ? `${x0} + 4u * xq < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      st = `${sh}[${off} + idx] = ${reg};`;
    } else if (p.vec) {
      // vec4 along l: transposed into workgroup memory one component at a time.
      idx = `let kq = idx % ${bk / 4}u; let x = idx / ${bk / 4}u;`;
      gi = `(${x0} + x) * ${g.L / 4}u + l0 / 4u + kq`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + 4u * kq < L` : ""];
      st = ["x", "y", "z", "w"].map((c, i) =>
        `${sh}[${off} + (4u * kq + ${i}u) * ${ext / 4}u + x / 4u][x % 4u] = ${reg}.${c};`
      ).join(" ");
    } else if (outerContig) {
      idx = `let x = idx % ${ext}u; let l = idx / ${ext}u;`;
      gi = `(l0 + l) * ${dim}u + ${x0} + x`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      st = `${sh}[${off} + l * ${ext / 4}u + x / 4u][x % 4u] = ${reg};`;
    } else {
      idx = `let l = idx % ${bk}u; let x = idx / ${bk}u;`;
      gi = `(${x0} + x) * L + l0 + l`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      st = `${sh}[${off} + l * ${ext / 4}u + x / 4u][x % 4u] = ${reg};`;
    }
    const lx = `let idx = t + ${j * threads}u; ${idx}`;
    const cond = conds.filter((c) => c).join(" && ");
    const value = cond ? `select(${ty}(0.0), ${name}[${gi}], ${cond})` : `${name}[${gi}]`;
    // Threads past the tile's end (when it does not divide the threads) load and store nothing.
    const guard = (j + 1) * threads > elems ? `if (idx < ${elems}u) ` : "";
    load += `      { ${lx} ${guard}{ ${reg} = ${value}; } }\n`;
    store += `      { ${lx} ${guard}{ ${st} } }\n`;
  }
  return { decls, load, store };
}

/** WGSL computing the block tile origin r0, q0 from the workgroup id (grouped when swizzled). */
function origin(g: Gemm, p: Plan): string {
  const BM = blockM(p.tile), BN = blockN(p.tile);
  const nx = cdiv(g.Q, BN), ny = cdiv(g.R, BM), G = p.swizzle;
  if (G <= 1 || ny <= G) return `  let r0 = wg.y * ${BM}u;\n  let q0 = wg.x * ${BN}u;`;
  return [
    `  let pid = wg.y * ${nx}u + wg.x;`,
    `  let first = pid / ${G * nx}u * ${G}u;`,
    `  let rows = min(${ny}u - first, ${G}u);`,
    `  let r0 = (first + pid % ${G * nx}u % rows) * ${BM}u;`,
    `  let q0 = (pid % ${G * nx}u / rows) * ${BN}u;`,
  ].join("\n");
}

function gemmCode(g: Gemm, p: Plan, bias: boolean, accumulate: boolean): string {
  const { rg, cg, wx, wy, bk } = p.tile;
  const BM = blockM(p.tile), BN = blockN(p.tile);
  const ty = p.vec ? "vec4f" : "f32";
  const A = operand("a", BM, g.R, g.a === "lr", g, p);
  const B = operand("b", BN, g.Q, g.b === "lq", g, p);
  let decls = A.decls + B.decls;
  for (let i = 0; i < rg * 4; i++) {
    for (let h = 0; h < cg; h++) decls += `  var c${i}_${h} = vec4f(0.0);\n`;
  }
  let compute = "";
  // The BK-long inner product, unrolled `unroll` steps at a time (all of it on a real GPU).
  const u = p.unroll;
  const rolled = u < bk;
  if (rolled) compute += `      for (var kb = 0u; kb < BK; kb += ${u}u) {\n`;
  for (let kk = 0; kk < u; kk++) {
    const ka = rolled ? `(kb + ${kk}u) * ${BM / 4}u + ` : `${kk * BM / 4}u + `;
    const kb = rolled ? `(kb + ${kk}u) * ${BN / 4}u + ` : `${kk * BN / 4}u + `;
    compute += "      {\n";
    for (let gi = 0; gi < rg; gi++) {
      compute += `        let a${gi} = As[ao + ${ka}${gi * wy}u + ty];\n`;
    }
    for (let h = 0; h < cg; h++) {
      compute += `        let b${h} = Bs[bo + ${kb}${h * wx}u + tx];\n`;
    }
    for (let gi = 0; gi < rg; gi++) {
      for (let r = 0; r < 4; r++) {
        for (let h = 0; h < cg; h++) {
          const c = `c${gi * 4 + r}_${h}`;
          compute += `        ${c} = fma(vec4f(a${gi}.${"xyzw"[r]}), b${h}, ${c});\n`;
        }
      }
    }
    compute += "      }\n";
  }
  if (rolled) compute += "      }\n";
  // Epilogue: bias, accumulate, bounds; split-K partials go to c[z·R·Q..].
  const rowCheck = g.R % BM !== 0, colCheck = g.Q % BN !== 0;
  const zoff = p.splits > 1 ? ` + wg.z * ${g.R * g.Q}u` : "";
  let epi = "";
  for (let h = 0; h < cg; h++) epi += `  let col${h} = q0 + ${h * 4 * wx}u + tx * 4u;\n`;
  if (bias) {
    for (let h = 0; h < cg; h++) {
      epi += p.vec
        ? `  let bias${h} = select(vec4f(0.0), bias[col${h} / 4u], col${h} < Q);\n`
        : `  let bias${h} = vec4f(${
          [0, 1, 2, 3].map((c) => `select(0.0, bias[col${h} + ${c}u], col${h} + ${c}u < Q)`)
            .join(", ")
        });\n`;
    }
  }
  for (let gi = 0; gi < rg; gi++) {
    for (let r = 0; r < 4; r++) {
      const i = gi * 4 + r;
      epi += `  {\n    let row = r0 + ${gi * 4 * wy + r}u + ty * 4u;\n`;
      if (rowCheck) epi += `    if (row < R) {\n`;
      for (let h = 0; h < cg; h++) {
        const v = bias ? `c${i}_${h} + bias${h}` : `c${i}_${h}`;
        if (p.vec) {
          const st = `{ let o = (row * Q + col${h}${zoff}) / 4u; ${
            accumulate ? `c[o] = c[o] + ${v};` : `c[o] = ${v};`
          } }`;
          epi += colCheck ? `    if (col${h} < Q) ${st}\n` : `    ${st}\n`;
        } else {
          epi += `    { let v = ${v}; let o = row * Q + col${h}${zoff};\n`;
          for (let c = 0; c < 4; c++) {
            const st = accumulate
              ? `c[o + ${c}u] = c[o + ${c}u] + v.${"xyzw"[c]};`
              : `c[o + ${c}u] = v.${"xyzw"[c]};`;
            epi += colCheck ? `      if (col${h} + ${c}u < Q) { ${st} }\n` : `      ${st}\n`;
          }
          epi += `    }\n`;
        }
      }
      if (rowCheck) epi += `    }\n`;
      epi += `  }\n`;
    }
  }
  let bindings = `@group(0) @binding(0) var<storage, read> a: array<${ty}>;\n` +
    `@group(0) @binding(1) var<storage, read> b: array<${ty}>;\n` +
    `@group(0) @binding(2) var<storage, read_write> c: array<${ty}>;`;
  if (bias) bindings += `\n@group(0) @binding(3) var<storage, read> bias: array<${ty}>;`;
  return specialise(sections.gemm, {
    BINDINGS: bindings,
    R: g.R,
    Q: g.Q,
    L: g.L,
    BK: bk,
    WX: wx,
    KPER: p.kper,
    ABUF: bk * BM / 4,
    BBUF: bk * BN / 4,
    ABUF2: 2 * bk * BM / 4,
    BBUF2: 2 * bk * BN / 4,
    THREADS: wx * wy,
    ORIGIN: origin(g, p),
    DECLS: decls,
    LOAD: A.load + B.load,
    STORE: A.store + B.store,
    COMPUTE: compute,
    EPILOGUE: epi,
  });
}

function reduceCode(
  g: Gemm,
  splits: number,
  vec: boolean,
  bias: boolean,
  accumulate: boolean,
): string {
  const w = vec ? 4 : 1;
  const T = vec ? "vec4f" : "f32";
  let finish = "";
  if (bias) finish += `  s += bias[i % ROW];\n`;
  finish += accumulate ? `  out[i] = out[i] + s;` : `  out[i] = s;`;
  return specialise(sections.reduce, {
    T,
    BIAS_DECL: bias ? `@group(0) @binding(2) var<storage, read> bias: array<${T}>;` : "",
    COUNT: g.R * g.Q / w,
    SPLITS: splits,
    ROW: g.Q / w,
    FINISH: finish,
  });
}

const scratch = new WeakMap<Kernels, Tensor>();

/** A shared split-K scratch of at least `n` floats (grown on demand; old dispatches keep theirs). */
function scratchTensor(k: Kernels, n: number): Tensor {
  const s = scratch.get(k);
  if (s && s.length >= n) return { ...s, length: n, shape: [n] };
  const t = k.tensor([Math.max(n, s?.length ?? 0)], "linear split-K scratch");
  scratch.set(k, t);
  return { ...t, length: n, shape: [n] };
}

function gemm(
  k: Kernels,
  name: string,
  g: Gemm,
  a: Tensor,
  b: Tensor,
  c: Tensor,
  bias: Tensor | null,
  opts: LinearOptions,
): Dispatch[] {
  const p = plan(g, opts, name, k.gpu.isFallback);
  const accumulate = opts.accumulate ?? false;
  const BM = blockM(p.tile), BN = blockN(p.tile);
  const shared = 2 * p.tile.bk * (BM + BN) * 4;
  const limit = k.device.limits.maxComputeWorkgroupStorageSize;
  if (shared > limit) {
    throw new Error(
      `${name}: tile needs ${shared} bytes of workgroup memory, device allows ${limit}`,
    );
  }
  const wg: [number, number, number] = [cdiv(g.Q, BN), cdiv(g.R, BM), p.splits];
  if (wg[0] > 65535 || wg[1] > 65535) throw new Error(`${name}: too many tiles ${wg}`);
  const entry = `${name}_gemm`;
  if (p.splits === 1) {
    const src = gemmCode(g, p, bias !== null, accumulate);
    const binds = bias ? [a, b, c, bias] : [a, b, c];
    return [k.dispatch(src, "gemm", binds, wg)].map((d) => ({ ...d, label: entry }));
  }
  const part = scratchTensor(k, p.splits * g.R * g.Q);
  const mm = k.dispatch(gemmCode(g, p, false, false), "gemm", [a, b, part], wg);
  const vecOut = g.Q % 4 === 0;
  const count = g.R * g.Q / (vecOut ? 4 : 1);
  const red = k.dispatch(
    reduceCode(g, p.splits, vecOut, bias !== null, accumulate),
    "reduce_splits",
    bias ? [part, c, bias] : [part, c],
    cdiv(count, 256),
  );
  return [{ ...mm, label: entry }, { ...red, label: `${name}_reduce` }];
}

function dims(name: string, t: Tensor, what: string): [number, number] {
  if (t.shape.length < 1) throw new Error(`${name}: ${what} has no shape`);
  const cols = t.shape[t.shape.length - 1];
  const rows = t.shape.slice(0, -1).reduce((x, y) => x * y, 1);
  if (rows * cols !== t.length) {
    throw new Error(`${name}: ${what} shape [${t.shape}] does not match length ${t.length}`);
  }
  if (rows < 1 || cols < 1) throw new Error(`${name}: ${what} shape [${t.shape}] is empty`);
  return [rows, cols];
}

function expect(name: string, what: string, got: number[], want: number[]): void {
  if (got.length !== want.length || got.some((v, i) => v !== want[i])) {
    throw new Error(`${name}: ${what} is [${got}], expected [${want}]`);
  }
}

function checkBias(name: string, b: Tensor | null, n: number, what = "bias"): void {
  if (b && b.length !== n) {
    throw new Error(`${name}: ${what} has ${b.length} elements, expected ${n}`);
  }
}

/**
 * y = x·wᵀ + b (accumulate: y += x·wᵀ + b). x [M,K] (leading dims flattened into M),
 * w [N,K] (PyTorch (out,in) layout), b [N] or null, y [M,N].
 */
export function linearForward(
  k: Kernels,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  y: Tensor,
  opts: LinearOptions = {},
): Dispatch[] {
  const name = "linear_fwd";
  const [M, K] = dims(name, x, "x");
  const [N, K2] = dims(name, w, "w");
  expect(name, "w's input width", [K2], [K]);
  expect(name, "y [M,N]", dims(name, y, "y"), [M, N]);
  checkBias(name, b, N);
  return gemm(k, name, { R: M, Q: N, L: K, a: "rl", b: "ql" }, x, w, y, b, opts);
}

/** dx = dy·w (accumulate: dx += dy·w). dy [M,N], w [N,K], dx [M,K]. */
export function linearBackwardInput(
  k: Kernels,
  dy: Tensor,
  w: Tensor,
  dx: Tensor,
  opts: LinearOptions = {},
): Dispatch[] {
  const name = "linear_dx";
  const [M, N] = dims(name, dy, "dy");
  const [N2, K] = dims(name, w, "w");
  expect(name, "w's output width", [N2], [N]);
  expect(name, "dx [M,K]", dims(name, dx, "dx"), [M, K]);
  return gemm(k, name, { R: M, Q: K, L: N, a: "rl", b: "lq" }, dy, w, dx, null, opts);
}

/**
 * dw = dyᵀ·x and db = column sums of dy (accumulate: +=). dy [M,N], x [M,K], dw [N,K],
 * db [N] or null. Deterministic: split-K partials and the column sums are reduced in fixed order.
 */
export function linearBackwardWeight(
  k: Kernels,
  dy: Tensor,
  x: Tensor,
  dw: Tensor,
  db: Tensor | null,
  opts: LinearOptions = {},
): Dispatch[] {
  const name = "linear_dw";
  const [M, N] = dims(name, dy, "dy");
  const [M2, K] = dims(name, x, "x");
  expect(name, "x's rows", [M2], [M]);
  expect(name, "dw [N,K]", dims(name, dw, "dw"), [N, K]);
  checkBias(name, db, N, "db");
  const out = gemm(k, name, { R: N, Q: K, L: M, a: "lr", b: "lq" }, dy, x, dw, null, opts);
  if (db) out.push(...columnSums(k, dy, M, N, db, opts.accumulate ?? false));
  return out;
}

/** db (=, +=) Σ_rows dy, in two fixed-order stages. */
function columnSums(
  k: Kernels,
  dy: Tensor,
  M: number,
  N: number,
  db: Tensor,
  accumulate: boolean,
): Dispatch[] {
  const vec = N % 4 === 0;
  const cols = vec ? N / 4 : N;
  // Enough (chunk, column) threads to fill the GPU, chunks a multiple of 4 rows.
  const chunk = Math.max(4, Math.ceil(M * cols / 16384 / 4) * 4);
  const nchunk = cdiv(M, chunk);
  const src = specialise(sections.colsum, {
    T: vec ? "vec4f" : "f32",
    ROWS: M,
    COLS: cols,
    CHUNK: chunk,
    NCHUNK: nchunk,
    FINISH: accumulate ? "  dst[col] = dst[col] + s;" : "  dst[col] = s;",
  });
  const part = k.tensor([nchunk * N], "linear db partial sums");
  return [
    { ...k.dispatch(src, "colsum_part", [dy, part], [cdiv(cols, 64), nchunk, 1]) },
    { ...k.dispatch(src, "colsum_final", [part, db], [cdiv(cols, 64), 1, 1]) },
  ].map((d, i) => ({ ...d, label: i ? "linear_db_final" : "linear_db_part" }));
}
