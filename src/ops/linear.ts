/**
 * Linear layers (matmul), forward and both backward products, as one register-blocked GEMM
 * generator over shaders/linear.wgsl, in f32 or f16 (both operands f16: packed f16 products,
 * f32 accumulation; see the shader's header for the exact scheme). Shapes are specialised into
 * the WGSL text and the inner product is unrolled.
 *
 * Tiling (`Tile`): BM = 4·rg·wy rows by BN = 4·cg·wx columns over wx·wy threads, bk reduction
 * steps per workgroup tile, plus code-shape switches (double buffering, load mapping, warp shape,
 * flat arrays or one variable per buffer, 4×4-block transposing loads; for f16 the form, chunk,
 * 16-byte workgroup elements (h8) and f32 sums kept in workgroup memory (wacc)). The default per
 * shape class and precision is `DEFAULTS` (update it from `deno run -A tasks/matmul_bench.ts
 * --sweep`; a default the device's workgroup memory cannot hold drops wacc, then halves bk).
 * Named variants (opts.variant):
 *   "big"    128×64 block tile, 8×16 threads, 8×8 outputs per thread, BK 16
 *   "wide"   64×128 block tile, 16×8 threads, 8×8 outputs per thread, BK 16
 *   "mid"    64×64 block tile, 16×16 threads, 4×4 outputs per thread, BK 8
 *   "small"  32×32 block tile, 8×8 threads, 4×4 outputs per thread, BK 16
 *   "splitk" the big tile with the reduction split over workgroups; partial sums (f32) go to a
 *            scratch tensor and are summed in a fixed split order by a second dispatch, which
 *            also applies the bias and epilogue (deterministic, no atomics)
 *   "scalar" the small tile with scalar global loads and stores (any widths)
 * Global memory is read and written as vec4 when the widths allow (Q and L multiples of 4, or
 * R for dW's transposed A); otherwise every tile falls back to scalar access automatically.
 *
 * f16 (x and w, or dy and w, or dy and x, all f16): products and running sums in f16 for `chunk`
 * reduction steps (default bk), then added into f32 accumulators: form "splat" keeps a
 * vec4<f16> partial sum per 4 outputs (fma(vec4<f16>(a[r]), b[l, 4 columns], s): each lane sums at
 * most `chunk` products), form "pair" a vec2<f16> per output whose lanes take the even and odd l
 * of each pair (fma(a[r, l..l+1], b[l..l+1, q], s): at most chunk/2 products a lane, the two
 * lanes added in f32), form "swap" a vec4<f16> per 4 outputs on a diagonal of the thread's 4×4
 * blocks (fma(a[4 rows, l], b[l, 4 columns] with lanes permuted, s): at most `chunk` products a
 * lane, both multiplicands whole registers). So no f16 lane ever sums more than `chunk` products
 * (a few dozen at most: the sweep's candidates use 8 to 64) before they reach f32 (registers, or
 * with `wacc` the thread's own f32 slots in workgroup memory). Bias, epilogue and split-K sums
 * are f32; an f16 output is rounded once. The resulting bound is in tests/ops_linear_f16_test.ts.
 *
 * Epilogues (forward): `gelu` (y = gelu(x·wᵀ+b)), `gate` + `residual` (y = residual +
 * mod[b, chunk]·(x·wᵀ+b), b = row / T), `pre` (also store x·wᵀ+b, which the backward of gelu or
 * of the gate needs). dX: `geluGrad` (dx = (dy·w) ⊙ gelu'(h), h the stored pre-activation).
 */
import type { Dispatch, DType, Kernels, Tensor } from "../gpu/kernels.ts";
import { specialise } from "../gpu/kernels.ts";
import code from "../../shaders/linear.wgsl" with { type: "text" };

/** A block tiling and the code shape of its kernel. */
export interface Tile {
  /** Groups of 4 rows and of 4 columns per thread (a thread computes 4·rg × 4·cg outputs). */
  rg: number;
  cg: number;
  /** Threads along columns and rows. */
  wx: number;
  wy: number;
  /** Reduction steps per workgroup tile (a multiple of 4). */
  bk: number;
  /** Double-buffered workgroup tiles, one barrier per tile (default true); false: one buffer. */
  db?: boolean;
  /** Transposing loads: consecutive threads take consecutive rows, not consecutive l (no
   * workgroup-memory bank conflicts on the transposed stores; default false). */
  xfast?: boolean;
  /** Threads along columns within one 32-lane warp (default: wx, i.e. threads row-major). */
  wtx?: number;
  /** One flat workgroup array per operand indexed with dynamic offsets: the pre-sweep code, a
   * clamp per workgroup load (for comparison; default false). */
  flat?: boolean;
  /** f16: reduction steps summed in f16 before the f32 accumulators take them (default bk;
   * a divisor or a multiple of bk; 0 = only at the end, a test of the scheme's necessity). */
  chunk?: number;
  /** f16: "splat" (vec4<f16> lane per output, a splatted), "pair" (vec2<f16> per output over
   * l pairs, both multiplicands vectors) or "swap" (vec4<f16> lanes on diagonals: a's 4 rows
   * times b's 4 columns with lanes permuted, both multiplicands vectors); default "splat". */
  form?: "splat" | "pair" | "swap";
  /** Operands read along l (x·wᵀ's both, dy·w's dy) by 4×4 blocks: a thread loads 4 rows at
   * one l-quad and stores them transposed as 4 vectors, not 16 scalars (vec4 access only; not
   * the pair form; default false). */
  blocks?: boolean;
  /** Double buffering as two workgroup variables, the tile loop unrolled by 2, so no access
   * indexes the buffer dynamically (default false; needs db). */
  sep?: boolean;
  /** f16 splat/swap: workgroup tiles of 16-byte elements (mat2x4<f16>, 8 consecutive rows or
   * columns), so one load brings a thread 8 rows of A or 8 columns of B; the thread's groups of
   * 4 rows (columns) pair up into 8 consecutive ones (rg and cg even; default false). */
  h8?: boolean;
  /** f16: the f32 accumulators in workgroup memory (each thread its own slots, touched only at
   * the flushes), leaving registers to the f16 partial sums (default false). */
  wacc?: boolean;
  /** Probe only (`tasks/matmul_bench.ts --probe`): load the first tile, then run the inner
   * loop over it without the later tiles' global loads and workgroup stores, so the results
   * are wrong whenever L spans more than one tile (default false). */
  computeOnly?: boolean;
}

/** Split-K by target: splits = min(ceil(target / output tiles), floor(L / minK), 64). */
export interface SplitPolicy {
  target: number;
  minK: number;
}

export interface LinearOptions {
  /** Add into the output (+=) instead of overwriting it. */
  accumulate?: boolean;
  /** "big" | "wide" | "mid" | "small" | "splitk" | "scalar"; default: `DEFAULTS` by shape. */
  variant?: string;
  /** Reduction splits (split-K); default: chosen by variant and shape. */
  splits?: number;
  /** Split-K policy when `splits` is not given (default: the variant's or shape class's). */
  split?: SplitPolicy;
  /** Inner-product steps unrolled per loop iteration (f32 only; default: the whole BK tile). */
  unroll?: number;
  /** Tuning: override the block tiling. */
  tile?: Tile;
  /** Tuning: walk block tiles in groups of this many rows (L2 reuse); 1 = row-major. */
  swizzle?: number;
  /** Forward: y = gelu(x·wᵀ + b) (tanh approximation); `pre` receives x·wᵀ + b. */
  gelu?: boolean;
  /** Forward: also store x·wᵀ + b (before gelu and gate), same shape as y. */
  pre?: Tensor;
  /** Forward: y = (residual +) mod[b, chunk·N + n]·(x·wᵀ + b); mod [B, nChunks·N], b = row / T
   * with T = M / B (DiT's gated residual; DiT's gate chunks are 2 and 5 of 6). */
  gate?: { mod: Tensor; chunk: number };
  /** Forward: y = residual + … (a separate tensor of y's shape). */
  residual?: Tensor;
  /** dX: dx = (dy·w) ⊙ gelu'(h), h [M,K] the pre-activation the forward stored. */
  geluGrad?: Tensor;
}

/** Named tiles (the variants). */
export const TILES: Record<string, Tile> = {
  big: { rg: 2, cg: 2, wx: 8, wy: 16, bk: 16 },
  wide: { rg: 2, cg: 2, wx: 16, wy: 8, bk: 16 },
  mid: { rg: 1, cg: 1, wx: 16, wy: 16, bk: 8 },
  small: { rg: 1, cg: 1, wx: 8, wy: 8, bk: 16 },
};

/** Workgroups that fill an H100/H200 (132 SMs, about two each); sizes the default grids. */
const TARGET_WORKGROUPS = 264;
/** Split-K scratch limit, in floats (shared by every split-K dispatch of a Kernels). */
const MAX_SCRATCH = 16 * 1024 * 1024;

/** Long reductions with few output tiles (dW over tokens): about 4 workgroups per SM pair. */
export const SPLIT_LONG: SplitPolicy = { target: 4 * TARGET_WORKGROUPS, minK: 256 };
/** Small outputs (adaLN): split until the grid covers the GPU. */
export const SPLIT_SMALL: SplitPolicy = { target: 384, minK: 64 };

/**
 * Shape classes of the default table: "fwd" / "dx" / "dw" large products by layout; "splitk" a
 * long reduction (L ≥ 2048) onto few output tiles; "narrowQ" / "narrowR" at most 16 output
 * columns / rows; "thin" a reduction of at most 16; "small" the rest (few output tiles).
 */
export type ShapeClass =
  | "fwd"
  | "dx"
  | "dw"
  | "splitk"
  | "small"
  | "narrowQ"
  | "narrowR"
  | "thin";

/** A default: tiling, split policy (none: one split), swizzle (none: by B's size). */
export interface Choice {
  tile: Tile;
  split?: SplitPolicy;
  swizzle?: number;
}

/**
 * Defaults per precision and shape class: the class picks of the first H200 sweep
 * (`tasks/matmul_bench.ts --sweep`, 2026-11; flat workgroup arrays beat the 3D ones for f32, BK 16
 * beat BK 32 for f16). "dw" (no model product falls in it) follows "fwd".
 */
export const DEFAULTS: Record<"f32" | "f16", Record<ShapeClass, Choice>> = {
  f32: {
    fwd: { tile: { ...TILES.big, flat: true } },
    dx: { tile: { ...TILES.wide, flat: true } },
    dw: { tile: { ...TILES.big, flat: true } },
    splitk: { tile: { ...TILES.big, flat: true }, split: SPLIT_LONG },
    small: { tile: TILES.small, split: SPLIT_SMALL },
    narrowQ: { tile: { rg: 1, cg: 1, wx: 2, wy: 32, bk: 16 }, split: SPLIT_SMALL },
    narrowR: { tile: { rg: 1, cg: 1, wx: 32, wy: 2, bk: 16 }, split: SPLIT_SMALL },
    thin: { tile: { ...TILES.wide, bk: 4 } },
  },
  f16: {
    fwd: { tile: { ...TILES.big, form: "pair" } },
    dx: { tile: TILES.big },
    dw: { tile: { ...TILES.big, form: "pair" } },
    splitk: { tile: TILES.big, split: SPLIT_LONG },
    small: { tile: TILES.small, split: { ...SPLIT_SMALL, target: 768 } },
    narrowQ: { tile: { rg: 1, cg: 1, wx: 2, wy: 32, bk: 16 }, split: SPLIT_SMALL },
    narrowR: { tile: { rg: 1, cg: 1, wx: 32, wy: 2, bk: 16 }, split: SPLIT_SMALL },
    thin: { tile: { ...TILES.wide, bk: 4 } },
  },
};

type ALayout = "rl" | "lr";
type BLayout = "ql" | "lq";

/** One GEMM: C[R,Q] = A·B summed over L, operand layouts, precision. */
export interface Gemm {
  R: number;
  Q: number;
  L: number;
  a: ALayout;
  b: BLayout;
  f16: boolean;
}

interface Plan {
  tile: Required<Tile>;
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

/** The default table's class of a GEMM. */
export function shapeClass(g: { R: number; Q: number; L: number; a: string; b: string }) {
  if (g.L <= 16) return "thin";
  if (g.Q <= 16) return "narrowQ";
  if (g.R <= 16) return "narrowR";
  const tiles = cdiv(g.R, 128) * cdiv(g.Q, 64);
  if (tiles >= 2 * TARGET_WORKGROUPS) return g.a === "lr" ? "dw" : g.b === "lq" ? "dx" : "fwd";
  if (g.L >= 2048 && g.R * g.Q >= 256 * 256) return "splitk";
  return "small";
}

/** A tile with every switch filled in, checked. */
function fullTile(t: Tile, f16: boolean, name: string): Required<Tile> {
  const full: Required<Tile> = {
    rg: t.rg,
    cg: t.cg,
    wx: t.wx,
    wy: t.wy,
    bk: t.bk,
    db: t.db ?? true,
    xfast: t.xfast ?? false,
    wtx: t.wtx ?? t.wx,
    flat: t.flat ?? false,
    chunk: t.chunk ?? t.bk,
    form: t.form ?? "splat",
    computeOnly: t.computeOnly ?? false,
    h8: t.h8 ?? false,
    wacc: t.wacc ?? false,
    blocks: t.blocks ?? false,
    sep: t.sep ?? false,
  };
  const bad = (why: string) => {
    throw new Error(`${name}: bad tile ${JSON.stringify(t)}: ${why}`);
  };
  for (const k of ["rg", "cg", "wx", "wy", "bk"] as const) {
    if (!Number.isInteger(full[k]) || full[k] < 1) bad(`${k} must be a positive integer`);
  }
  if (full.bk % 4 !== 0) bad("bk must be a multiple of 4");
  const threads = full.wx * full.wy;
  if (full.wtx !== full.wx) {
    const w = full.wtx;
    if (threads % 32 || 32 % w || full.wx % w || full.wy % (32 / w)) {
      bad("wtx must divide wx and 32, with whole 32-thread warps tiling wx·wy");
    }
  }
  if (f16) {
    const c = full.chunk;
    if (!(c === 0 || (c <= full.bk ? full.bk % c === 0 : c % full.bk === 0))) {
      bad("chunk must be 0, a divisor of bk or a multiple of bk");
    }
    if (full.form === "pair" && c % 2 !== 0) bad("the pair form needs an even chunk");
    if (!["splat", "pair", "swap"].includes(full.form)) bad(`unknown form ${full.form}`);
  }
  if (full.sep && !full.db) bad("sep (one variable per buffer) needs db");
  if (full.wacc && !f16) bad("wacc is for f16 operands");
  if (full.h8) {
    if (!f16 || full.form === "pair") bad("h8 is for the f16 splat and swap forms");
    if (full.rg % 2 || full.cg % 2) bad("h8 needs even rg and cg");
  }
  return full;
}

/** Workgroup memory of a tile's kernel, in bytes. */
function sharedBytes(t: Tile, f16: boolean): number {
  const tiles = ((t.db ?? true) ? 2 : 1) * t.bk * (blockM(t) + blockN(t)) * (f16 ? 2 : 4);
  return tiles + (f16 && t.wacc ? t.wx * t.wy * t.rg * t.cg * 64 : 0);
}

function plan(
  g: Gemm,
  opts: LinearOptions,
  name: string,
  cpu: boolean,
  sharedLimit = Infinity,
): Plan {
  const variant = opts.variant;
  let choice: Choice;
  if (opts.tile) choice = { tile: opts.tile };
  else if (variant !== undefined) {
    const tileName = variant === "splitk" ? "big" : variant === "scalar" ? "small" : variant;
    const tile = TILES[tileName];
    if (!tile) {
      throw new Error(
        `${name}: unknown variant "${variant}" (big, wide, mid, small, splitk, scalar)`,
      );
    }
    choice = { tile, split: variant === "splitk" ? SPLIT_LONG : undefined };
  } else choice = DEFAULTS[g.f16 ? "f16" : "f32"][shapeClass(g)];
  let tile = choice.tile;
  // Software adapters (llvmpipe) take minutes to compile shaders with large workgroup memory
  // (its cost grows with the square of the size): same code, a reduction tile of at most 8.
  if (cpu && !opts.tile && tile.bk > 8) tile = { ...tile, bk: 8 };
  // A default that does not fit this device's workgroup memory (a tuned wacc tile on a 32 KB
  // adapter): the f32 sums back in registers, then a shorter reduction tile.
  if (!opts.tile && sharedBytes(tile, g.f16) > sharedLimit) tile = { ...tile, wacc: false };
  while (!opts.tile && sharedBytes(tile, g.f16) > sharedLimit && tile.bk > 4) {
    tile = { ...tile, bk: tile.bk / 2 };
  }
  const full = fullTile(tile, g.f16, name);
  const vec = vecOk(g) && variant !== "scalar";
  const tiles = cdiv(g.R, blockM(full)) * cdiv(g.Q, blockN(full));
  let splits = opts.splits ?? 1;
  const policy = opts.split ?? choice.split;
  if (opts.splits === undefined && policy) {
    splits = Math.min(
      cdiv(policy.target, tiles),
      Math.max(1, Math.floor(g.L / policy.minK)),
      Math.max(1, Math.floor(MAX_SCRATCH / (g.R * g.Q))),
      64,
    );
  }
  if (!Number.isInteger(splits) || splits < 1) throw new Error(`${name}: bad splits ${splits}`);
  const kper = cdiv(cdiv(g.L, splits), full.bk) * full.bk;
  splits = cdiv(g.L, kper); // no empty split
  const unroll = opts.unroll ?? full.bk;
  if (full.bk % unroll !== 0) {
    throw new Error(`${name}: unroll ${unroll} does not divide ${full.bk}`);
  }
  if (g.f16 && unroll !== full.bk) throw new Error(`${name}: f16 kernels unroll the whole tile`);
  // B larger than L2 can keep (square 4096: +2%): walk tiles in groups of 8 rows so concurrent
  // workgroups share B tiles. Not for model weights (it cost qkv's forward a third on an H100).
  const bBytes = g.Q * g.L * (g.f16 ? 2 : 4);
  const swizzle = opts.swizzle ?? choice.swizzle ?? (bBytes > 16 * 2 ** 20 ? 8 : 1);
  return { tile: full, vec, splits, kper, unroll, swizzle };
}

// ---------------------------------------------------------------------------------------------
// Workgroup tiles. Layout "quad" (f32, f16 splat/swap): Sh[buf][l][x/4] is a vec4 of 4
// consecutive x. Layout "h8" (f16): Sh[buf][l][x/8] a mat2x4<f16> of 8 consecutive x (column
// x/4 % 2, lane x % 4). Layout "pair" (f16 pair): Sh[buf][l/2][x/2] is a vec4<f16> (x,l) (x,l+1)
// (x+1,l) (x+1,l+1) for even x and l, so .xy of one row and .xy of one column are a product's
// two operand pairs.

interface Shared {
  name: "As" | "Bs";
  /** Tile extent along x (BM or BN). */
  ext: number;
  pair: boolean;
  h8: boolean;
  flat: boolean;
  /** One workgroup variable per buffer (double buffering with the tile loop unrolled by 2). */
  sep: boolean;
  bk: number;
  nbuf: number;
}

/** Elements (vec4, or mat2x4 for h8) per l-row of the workgroup tile. */
const inner = (s: Shared) => s.pair ? s.ext / 2 : s.h8 ? s.ext / 8 : s.ext / 4;
const lrows = (s: Shared) => s.pair ? s.bk / 2 : s.bk;

/** Declarations of one operand's workgroup tile (one variable per buffer when `sep`). */
function sharedDecl(s: Shared, vty: string): string {
  const n = inner(s), rows = lrows(s);
  if (s.sep) {
    const ty = s.flat ? `array<${vty}, ${rows * n}>` : `array<array<${vty}, ${n}>, ${rows}>`;
    return [0, 1].map((b) => `var<workgroup> ${s.name}${b}: ${ty};\n`).join("");
  }
  return `var<workgroup> ${s.name}: ${
    s.flat
      ? `array<${vty}, ${s.nbuf * rows * n}>`
      : `array<array<array<${vty}, ${n}>, ${rows}>, ${s.nbuf}>`
  };\n`;
}

/**
 * The element (vec4, or mat2x4 for h8) at (l-row, inner index) of buffer `buf`; with `sep` the
 * buffer is a literal the caller substitutes for § (SEP_BUF).
 */
function shAt(s: Shared, row: string, idx: string): string {
  const n = inner(s);
  if (s.sep) {
    return s.flat
      ? `${s.name}${SEP_BUF}[(${row}) * ${n}u + ${idx}]`
      : `${s.name}${SEP_BUF}[${row}][${idx}]`;
  }
  if (!s.flat) return `${s.name}[buf][${row}][${idx}]`;
  return `${s.name}[buf * ${lrows(s) * n}u + (${row}) * ${n}u + ${idx}]`;
}
const SEP_BUF = "§";

/** Store one scalar at tile position (x, l). */
function shStore(s: Shared, x: string, l: string, v: string): string {
  if (s.h8) return `${shAt(s, l, `(${x}) / 8u`)}[(${x}) / 4u % 2u][(${x}) % 4u] = ${v};`;
  if (!s.pair) return `${shAt(s, l, `(${x}) / 4u`)}[(${x}) % 4u] = ${v};`;
  return `${shAt(s, `(${l}) / 2u`, `(${x}) / 2u`)}[((${x}) % 2u) * 2u + (${l}) % 2u] = ${v};`;
}

/** Loads of one operand tile into registers p{name}{j}, and their stores to workgroup memory. */
function operand(
  sh: Shared,
  opName: "a" | "b",
  dim: number,
  outerContig: boolean,
  g: Gemm,
  p: Plan,
): { decls: string; load: string; store: string } {
  const { bk, xfast } = p.tile;
  const ext = sh.ext;
  const threads = p.tile.wx * p.tile.wy;
  const x0 = opName === "a" ? "r0" : "q0";
  const elems = p.vec ? ext * bk / 4 : ext * bk;
  const per = Math.ceil(elems / threads);
  const h = g.f16 ? "f16" : "f32";
  const ty = p.vec ? `vec4<${h}>` : h;
  const xCheck = dim % ext !== 0;
  const lCheck = g.L % bk !== 0; // splits hold whole BK tiles, so only the end of L is ragged
  let decls = "", load = "", store = "";
  if (p.vec && !outerContig && p.tile.blocks && !sh.pair) {
    // 4×4 blocks: a thread reads rows 4·xg..4·xg+3 at l-quad kq (4 vec4 loads along l) and
    // stores the block transposed as 4 vec4 along x, one per l (not 16 scalar stores).
    const nblk = (ext / 4) * (bk / 4);
    for (let j = 0; j < Math.ceil(nblk / threads); j++) {
      const regs = [0, 1, 2, 3].map((r) => `p${opName}${j}_${r}`);
      decls += regs.map((r) => `  var ${r}: ${ty};\n`).join("");
      const lx = `let blk = t + ${j * threads}u; let kq = blk % ${bk / 4}u; ` +
        `let xg = blk / ${bk / 4}u;`;
      const guard = (j + 1) * threads > nblk ? `if (blk < ${nblk}u) ` : "";
      const loads = regs.map((reg, r) => {
        const row = `${x0} + 4u * xg + ${r}u`;
        const cond = [xCheck ? `${row} < ${dim}u` : "", lCheck ? `l0 + 4u * kq < L` : ""]
          .filter((c) => c).join(" && ");
        const gi = `${opName}[(${row}) * ${g.L / 4}u + l0 / 4u + kq]`;
        return `${reg} = ${cond ? `select(${ty}(0.0), ${gi}, ${cond})` : gi};`;
      }).join(" ");
      const stores = [0, 1, 2, 3].map((c) => {
        const v = `${ty}(${regs.map((r) => `${r}.${"xyzw"[c]}`).join(", ")})`;
        const l = `4u * kq + ${c}u`;
        return sh.h8
          ? `${shAt(sh, l, "xg / 2u")}[xg % 2u] = ${v};`
          : `${shAt(sh, l, "xg")} = ${v};`;
      }).join(" ");
      load += `      { ${lx} ${guard}{ ${loads} } }\n`;
      store += `      { ${lx} ${guard}{ ${stores} } }\n`;
    }
    return { decls, load, store };
  }
  for (let j = 0; j < per; j++) {
    const reg = `p${opName}${j}`;
    decls += `  var ${reg}: ${ty};\n`;
    let idx: string, gi: string, conds: string[], st: string;
    if (p.vec && outerContig) {
      // vec4 along x: tile row l holds ext/4 vec4s (coalesced reads).
      idx = `let xq = idx % ${ext / 4}u; let l = idx / ${ext / 4}u;`;
      gi = `(l0 + l) * ${dim / 4}u + ${x0} / 4u + xq`;
      conds = [xCheck ? `${x0} + 4u * xq < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      if (sh.h8) st = `${shAt(sh, "l", "xq / 2u")}[xq % 2u] = ${reg};`;
      else if (!sh.pair) st = `${shAt(sh, "l", "xq")} = ${reg};`;
      else {
        st = [0, 1, 2, 3].map((c) =>
          `${shAt(sh, "l / 2u", `2u * xq + ${c >> 1}u`)}[${(c & 1) * 2}u + l % 2u] = ${reg}.${
            "xyzw"[c]
          };`
        ).join(" ");
      }
    } else if (p.vec) {
      // vec4 along l, transposed into workgroup memory one component at a time.
      idx = xfast
        ? `let x = idx % ${ext}u; let kq = idx / ${ext}u;`
        : `let kq = idx % ${bk / 4}u; let x = idx / ${bk / 4}u;`;
      gi = `(${x0} + x) * ${g.L / 4}u + l0 / 4u + kq`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + 4u * kq < L` : ""];
      st = [0, 1, 2, 3].map((c) =>
        sh.pair
          ? `${shAt(sh, `2u * kq + ${c >> 1}u`, "x / 2u")}[(x % 2u) * 2u + ${c & 1}u] = ${reg}.${
            "xyzw"[c]
          };`
          : shStore(sh, "x", `4u * kq + ${c}u`, `${reg}.${"xyzw"[c]}`)
      ).join(" ");
    } else if (outerContig) {
      idx = `let x = idx % ${ext}u; let l = idx / ${ext}u;`;
      gi = `(l0 + l) * ${dim}u + ${x0} + x`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      st = shStore(sh, "x", "l", reg);
    } else {
      idx = xfast
        ? `let x = idx % ${ext}u; let l = idx / ${ext}u;`
        : `let l = idx % ${bk}u; let x = idx / ${bk}u;`;
      gi = `(${x0} + x) * L + l0 + l`;
      conds = [xCheck ? `${x0} + x < ${dim}u` : "", lCheck ? `l0 + l < L` : ""];
      st = shStore(sh, "x", "l", reg);
    }
    const lx = `let idx = t + ${j * threads}u; ${idx}`;
    const cond = conds.filter((c) => c).join(" && ");
    const value = cond ? `select(${ty}(0.0), ${opName}[${gi}], ${cond})` : `${opName}[${gi}]`;
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

/** Thread coordinates tx (columns), ty (rows), row-major or warp-tiled. */
function threadCode(t: Required<Tile>): string {
  if (t.wtx === t.wx) return `  let tx = t % ${t.wx}u;\n  let ty = t / ${t.wx}u;`;
  const nwx = t.wx / t.wtx, wty = 32 / t.wtx;
  return [
    `  let lane = t % 32u;`,
    `  let warp = t / 32u;`,
    `  let tx = (warp % ${nwx}u) * ${t.wtx}u + lane % ${t.wtx}u;`,
    `  let ty = (warp / ${nwx}u) * ${wty}u + lane / ${t.wtx}u;`,
  ].join("\n");
}

/**
 * Register tile, inner product and f16 flushes of one GEMM. After the loop (finalFlush) the swap
 * form's diagonal accumulators are read back into the row accumulators c{i}_{h} of the epilogue.
 */
function computeCode(g: Gemm, p: Plan, As: Shared, Bs: Shared) {
  const { rg, cg, wx, wy, bk, form, chunk, h8 } = p.tile;
  const pair = g.f16 && form === "pair";
  const swap = g.f16 && form === "swap";
  // h8: one index per pair of groups (8 rows / columns); groups 2j and 2j+1 are its two halves.
  const na = h8 ? rg / 2 : rg, nb = h8 ? cg / 2 : cg;
  const H4 = "vec4<f16>", H2 = "vec2<f16>";
  let decls = "";
  // Per-thread inner indexes of its A rows / B columns: constant through the loop.
  for (let gi = 0; gi < na; gi++) {
    if (pair) {
      for (let q = 0; q < 2; q++) decls += `  let ra${gi}_${q} = ${gi * 2 * wy + q}u + 2u * ty;\n`;
    } else decls += `  let ra${gi} = ${gi * wy}u + ty;\n`;
  }
  for (let h = 0; h < nb; h++) {
    if (pair) {
      for (let q = 0; q < 2; q++) decls += `  let rb${h}_${q} = ${h * 2 * wx + q}u + 2u * tx;\n`;
    } else decls += `  let rb${h} = ${h * wx}u + tx;\n`;
  }
  // Accumulators: c{i}_{h} (f32, row i, column group h); f16 partial sums s…; the swap form
  // keeps both by diagonal: lane r of d{gi}_{h}_{j} / s{gi}_{h}_{j} is row 4·gi + r, column r ^ j
  // of the group (j = 0: b as loaded, 1: b.yxwz, 2: b.zwxy, 3: b.wzyx).
  const diag: [number, number, number][] = [];
  for (let gi = 0; gi < rg; gi++) {
    for (let h = 0; h < cg; h++) for (let j = 0; j < 4; j++) diag.push([gi, h, j]);
  }
  // wacc: the f32 accumulators are this thread's slots of the workgroup array Cs (slot-major,
  // so a warp's accesses are consecutive 16-byte words) instead of registers.
  const wacc = g.f16 && p.tile.wacc;
  const cAcc = (i: number, h: number) => wacc ? `Cs[${i * cg + h}u][t]` : `c${i}_${h}`;
  const dAcc = (gi: number, h: number, j: number) =>
    wacc ? `Cs[${(gi * cg + h) * 4 + j}u][t]` : `d${gi}_${h}_${j}`;
  const zero = (acc: string) => wacc ? `  ${acc} = vec4f(0.0);\n` : `  var ${acc} = vec4f(0.0);\n`;
  if (swap) {
    for (const [gi, h, j] of diag) {
      decls += zero(dAcc(gi, h, j)) + `  var s${gi}_${h}_${j} = ${H4}();\n`;
    }
  } else {
    for (let i = 0; i < rg * 4; i++) {
      for (let h = 0; h < cg; h++) {
        decls += zero(cAcc(i, h));
        if (g.f16 && !pair) decls += `  var s${i}_${h} = ${H4}();\n`;
        if (pair) { for (let c = 0; c < 4; c++) decls += `  var s${i}_${h}_${c} = ${H2}();\n`; }
      }
    }
  }
  // f16 partial sums into the f32 accumulators.
  let flush = "";
  if (swap) {
    for (const [gi, h, j] of diag) {
      const v = `${gi}_${h}_${j}`;
      flush += `        ${dAcc(gi, h, j)} += vec4f(s${v});\n        s${v} = ${H4}();\n`;
    }
  }
  for (let i = 0; i < rg * 4 && !swap; i++) {
    for (let h = 0; h < cg; h++) {
      if (pair) {
        const s = [0, 1, 2, 3].map((c) => `s${i}_${h}_${c}`);
        flush += `        ${cAcc(i, h)} += vec4f(${s.map((v) => `hsum(${v})`).join(", ")});\n`;
        flush += s.map((v) => `        ${v} = ${H2}();\n`).join("");
      } else if (g.f16) {
        flush += `        ${cAcc(i, h)} += vec4f(s${i}_${h});\n        s${i}_${h} = ${H4}();\n`;
      }
    }
  }
  let compute = "";
  const u = p.unroll;
  const rolled = u < bk;
  if (rolled) compute += `      for (var kb = 0u; kb < BK; kb += ${u}u) {\n`;
  if (!pair) {
    for (let kk = 0; kk < u; kk++) {
      const k = rolled ? `kb + ${kk}u` : `${kk}u`;
      compute += "      {\n";
      for (let gi = 0; gi < na; gi++) {
        const at = shAt(As, k, `ra${gi}`);
        compute += h8
          ? `        let ma${gi} = ${at};\n        let a${2 * gi} = ma${gi}[0];\n` +
            `        let a${2 * gi + 1} = ma${gi}[1];\n`
          : `        let a${gi} = ${at};\n`;
      }
      for (let h = 0; h < nb; h++) {
        const at = shAt(Bs, k, `rb${h}`);
        compute += h8
          ? `        let mb${h} = ${at};\n        let b${2 * h} = mb${h}[0];\n` +
            `        let b${2 * h + 1} = mb${h}[1];\n`
          : `        let b${h} = ${at};\n`;
      }
      if (swap) {
        // Both multiplicands whole registers (no splat): b against a, and b with its lanes
        // swapped in pairs; .zwxy of either swaps its two 32-bit halves (free).
        for (let h = 0; h < cg; h++) compute += `        let e${h} = b${h}.yxwz;\n`;
        const bj = (h: number, j: number) => [`b${h}`, `e${h}`, `b${h}.zwxy`, `e${h}.zwxy`][j];
        for (const [gi, h, j] of diag) {
          const v = `s${gi}_${h}_${j}`;
          compute += `        ${v} = fma(a${gi}, ${bj(h, j)}, ${v});\n`;
        }
      }
      for (let gi = 0; gi < rg && !swap; gi++) {
        for (let r = 0; r < 4; r++) {
          for (let h = 0; h < cg; h++) {
            const a = `a${gi}.${"xyzw"[r]}`;
            compute += g.f16
              ? `        s${gi * 4 + r}_${h} = fma(${H4}(${a}), b${h}, s${gi * 4 + r}_${h});\n`
              : `        c${gi * 4 + r}_${h} = fma(vec4f(${a}), b${h}, c${gi * 4 + r}_${h});\n`;
          }
        }
      }
      compute += "      }\n";
      if (g.f16 && chunk > 0 && chunk <= bk && (kk + 1) % chunk === 0) compute += flush;
    }
  } else {
    for (let kp = 0; kp < bk / 2; kp++) {
      compute += "      {\n";
      for (let gi = 0; gi < rg; gi++) {
        for (let q = 0; q < 2; q++) {
          compute += `        let a${gi}_${q} = ${shAt(As, `${kp}u`, `ra${gi}_${q}`)};\n`;
        }
      }
      for (let h = 0; h < cg; h++) {
        for (let q = 0; q < 2; q++) {
          compute += `        let b${h}_${q} = ${shAt(Bs, `${kp}u`, `rb${h}_${q}`)};\n`;
        }
      }
      for (let i = 0; i < rg * 4; i++) {
        const a = `a${i >> 2}_${(i >> 1) & 1}.${i & 1 ? "zw" : "xy"}`;
        for (let h = 0; h < cg; h++) {
          for (let c = 0; c < 4; c++) {
            const b = `b${h}_${c >> 1}.${c & 1 ? "zw" : "xy"}`;
            const s = `s${i}_${h}_${c}`;
            compute += `        ${s} = fma(${a}, ${b}, ${s});\n`;
          }
        }
      }
      compute += "      }\n";
      if (chunk > 0 && chunk <= bk && (2 * kp + 2) % chunk === 0) compute += flush;
    }
  }
  if (rolled) compute += "      }\n";
  // Flushes every chunk/bk tiles when chunks span tiles; the last one after the loop.
  const tileFlush = g.f16 && chunk > bk
    ? `    if ((i + 1u) % ${chunk / bk}u == 0u) {\n${flush}    }\n`
    : "";
  let finalFlush = g.f16 && (chunk === 0 || chunk > bk) ? `  {\n${flush}  }\n` : "";
  if (wacc) {
    finalFlush += swap
      ? diag.map(([gi, h, j]) => `  let d${gi}_${h}_${j} = ${dAcc(gi, h, j)};\n`).join("")
      : Array.from({ length: rg * 4 * cg }, (_, e) => {
        const i = Math.floor(e / cg), h = e % cg;
        return `  let c${i}_${h} = ${cAcc(i, h)};\n`;
      }).join("");
  }
  if (swap) {
    // Row 4·gi + r, column c of group h: lane r of diagonal r ^ c.
    for (let gi = 0; gi < rg; gi++) {
      for (let r = 0; r < 4; r++) {
        for (let h = 0; h < cg; h++) {
          const lanes = [0, 1, 2, 3].map((c) => `d${gi}_${h}_${r ^ c}.${"xyzw"[r]}`);
          finalFlush += `  let c${gi * 4 + r}_${h} = vec4f(${lanes.join(", ")});\n`;
        }
      }
    }
  }
  const shared = wacc
    ? `var<workgroup> Cs: array<array<vec4f, ${wx * wy}>, ${rg * cg * 4}>;\n`
    : "";
  return { decls, compute, tileFlush, finalFlush, shared };
}

// ---------------------------------------------------------------------------------------------
// Epilogue: `put(row, col, v)` applies the fused operations to 4 outputs of a row starting at
// column col (a multiple of 4) and stores them. Used by the GEMM (one split) and by the split-K
// reduction, so both paths compute the same thing.

interface Epilogue {
  out: Tensor;
  accumulate: boolean;
  bias: Tensor | null;
  pre: Tensor | null;
  gelu: boolean;
  gate: { mod: Tensor; T: number; stride: number; offset: number } | null;
  residual: Tensor | null;
  geluGrad: Tensor | null;
}

const wty = (t: Tensor) => (t.dtype === "f16" ? "f16" : "f32");

/** Bindings (from `first`) and WGSL of the epilogue, for outputs of width Q. */
function epilogueCode(
  e: Epilogue,
  R: number,
  Q: number,
  first: number,
): { decls: string; tensors: Tensor[]; helpers: string; bias: (col: string) => string } {
  const vec = Q % 4 === 0;
  const tensors: Tensor[] = [];
  let decls = "";
  const bind = (name: string, t: Tensor, rw: boolean, asVec = vec) => {
    const ty = asVec ? `vec4<${wty(t)}>` : wty(t);
    decls += `@group(0) @binding(${first + tensors.length}) var<storage, ${
      rw ? "read_write" : "read"
    }> ${name}: array<${ty}>;\n`;
    tensors.push(t);
  };
  bind("out", e.out, true);
  if (e.bias) bind("bias", e.bias, false);
  if (e.pre) bind("pre", e.pre, true);
  if (e.residual) bind("res", e.residual, false);
  const gateVec = vec && e.gate !== null && e.gate.stride % 4 === 0 && e.gate.offset % 4 === 0;
  if (e.gate) bind("gmod", e.gate.mod, false, gateVec);
  if (e.geluGrad) bind("hh", e.geluGrad, false);
  const last = R * Q - 1;
  const load = (arr: string) =>
    vec
      ? `vec4f(${arr}[e / 4u])`
      : `vec4f(${
        [0, 1, 2, 3].map((c) => `f32(${arr}[${c ? `min(e + ${c}u, ${last}u)` : "e"}])`).join(", ")
      })`;
  const store = (arr: string, t: Tensor) => {
    const ty = wty(t);
    if (vec) return `  ${arr}[e / 4u] = vec4<${ty}>(v);\n`;
    return `  ${arr}[e] = ${ty}(v.x);\n` +
      [1, 2, 3].map((c) =>
        `  if (col + ${c}u < Q) { ${arr}[e + ${c}u] = ${ty}(v.${"xyzw"[c]}); }\n`
      ).join("");
  };
  let body = `fn put(row: u32, col: u32, v0: vec4f) {\n  let e = row * Q + col;\n  var v = v0;\n`;
  if (e.pre) body += store("pre", e.pre);
  if (e.gelu) body += `  v = gelu4(v);\n`;
  if (e.gate) {
    const { T, stride, offset } = e.gate;
    body += `  let gb = (row / ${T}u) * ${stride}u + ${offset}u + col;\n`;
    body += gateVec
      ? `  v = v * vec4f(gmod[gb / 4u]);\n`
      : `  v = v * vec4f(${
        [0, 1, 2, 3].map((c) => `f32(gmod[gb${c ? ` + ${c}u` : ""}])`).join(", ")
      });\n`;
  }
  if (e.geluGrad) body += `  v = v * gelu_grad4(${load("hh")});\n`;
  if (e.residual) body += `  v = v + ${load("res")};\n`;
  if (e.accumulate) body += `  v = v + ${load("out")};\n`;
  body += store("out", e.out) + "}\n";
  const helpers = (e.gelu || e.geluGrad ? sections.activation : "") + body;
  const bias = (col: string) =>
    !e.bias
      ? ""
      : vec
      ? `vec4f(bias[${col} / 4u])`
      : `vec4f(${[0, 1, 2, 3].map((c) => `f32(bias[min(${col} + ${c}u, ${Q - 1}u)])`).join(", ")})`;
  return { decls, tensors, helpers, bias };
}

const anyF16 = (ts: (Tensor | null)[]) => ts.some((t) => t?.dtype === "f16");

function gemmCode(
  g: Gemm,
  p: Plan,
  epi: Epilogue | null,
): { code: string; tensors: Tensor[] } {
  const { rg, cg, wx, wy, bk, db, flat, form, h8 } = p.tile;
  const BM = blockM(p.tile), BN = blockN(p.tile);
  const pair = g.f16 && form === "pair";
  const nbuf = db ? 2 : 1;
  const sep = db && p.tile.sep;
  const As: Shared = { name: "As", ext: BM, pair, h8, flat, sep, bk, nbuf };
  const Bs: Shared = { name: "Bs", ext: BN, pair, h8, flat, sep, bk, nbuf };
  const A = operand(As, "a", g.R, g.a === "lr", g, p);
  const B = operand(Bs, "b", g.Q, g.b === "lq", g, p);
  const C = computeCode(g, p, As, Bs);
  const decls = A.decls + B.decls + C.decls;
  const load = A.load + B.load, store = A.store + B.store;
  // The probe's compute-only loop keeps the barriers and drops the later tiles' traffic.
  const co = p.tile.computeOnly;
  const next = co ? "" : `let l0 = lbegin + (i + 1u) * BK;\n${load}`;
  const compute = `    {\n      let buf = ${db ? "i & 1u" : "0u"};\n${C.compute}    }\n`;
  let main: string;
  const inBuf = (text: string, b: number) => text.replaceAll(SEP_BUF, String(b));
  if (sep) {
    // Tiles i (buffer 0) and i + 1 (buffer 1) per iteration: every workgroup-memory access has
    // a literal buffer.
    const half = (b: number) =>
      `    {\n      let more = i + 1u < ntiles;\n      if (more) {\n        ${next}      }\n` +
      `${inBuf(C.compute, b)}${C.tileFlush}` +
      `      if (more) {\n${
        co ? "" : inBuf(store, 1 - b)
      }      }\n      workgroupBarrier();\n    }\n`;
    main = `  {\n    let l0 = lbegin;\n${load}${inBuf(store, 0)}  }\n  workgroupBarrier();\n` +
      `  for (var i2 = 0u; i2 < ntiles; i2 += 2u) {\n    let i = i2;\n${half(0)}` +
      `    if (i2 + 1u < ntiles) {\n      let i = i2 + 1u;\n${half(1)}    }\n  }\n`;
  } else if (db) {
    main =
      `  {\n    let l0 = lbegin;\n${load}    let buf = 0u;\n${store}  }\n  workgroupBarrier();\n` +
      `  for (var i = 0u; i < ntiles; i++) {\n    let more = i + 1u < ntiles;\n` +
      `    if (more) {\n      ${next}    }\n${compute}${C.tileFlush}` +
      `    if (more) {\n      let buf = (i + 1u) & 1u;\n${co ? "" : store}    }\n` +
      `    workgroupBarrier();\n  }\n`;
  } else {
    main = `  {\n    let l0 = lbegin;\n${load}  }\n` +
      `  for (var i = 0u; i < ntiles; i++) {\n    ${co ? "if (i == 0u) " : ""}{\n` +
      `      let buf = 0u;\n${store}    }\n` +
      `    workgroupBarrier();\n    if (i + 1u < ntiles) {\n      ${next}    }\n` +
      `${compute}${C.tileFlush}    workgroupBarrier();\n  }\n`;
  }
  main += C.finalFlush;
  // Epilogue: final values through put(), or f32 partial sums at part[z·R·Q..].
  const rowCheck = g.R % BM !== 0, colCheck = g.Q % BN !== 0;
  const vecOut = g.Q % 4 === 0;
  const h = g.f16 ? "f16" : "f32";
  const ty = p.vec ? `vec4<${h}>` : h;
  let bindings = `@group(0) @binding(0) var<storage, read> a: array<${ty}>;\n` +
    `@group(0) @binding(1) var<storage, read> b: array<${ty}>;\n`;
  let helpers = C.shared +
    (pair ? `fn hsum(v: vec2<f16>) -> f32 { return f32(v.x) + f32(v.y); }\n` : "");
  let tensors: Tensor[] = [];
  let ep = "";
  // Tile offset of a thread's group of 4 rows (columns): 4·w apart, or for h8 pairs of groups
  // 8·w apart, each pair 8 consecutive rows (columns).
  const off = (j: number, w: number, t: string) =>
    h8 ? `${(j >> 1) * 8 * w + (j & 1) * 4}u + ${t} * 8u` : `${j * 4 * w}u + ${t} * 4u`;
  for (let hh = 0; hh < cg; hh++) ep += `  let col${hh} = q0 + ${off(hh, wx, "tx")};\n`;
  let value = (i: number, hh: number) => `c${i}_${hh}`;
  let emit: (i: number, hh: number) => string;
  if (epi) {
    const e = epilogueCode(epi, g.R, g.Q, 2);
    bindings += e.decls;
    helpers += e.helpers;
    tensors = e.tensors;
    if (epi.bias) {
      for (let hh = 0; hh < cg; hh++) {
        ep += `  let bias${hh} = select(vec4f(0.0), ${e.bias(`col${hh}`)}, col${hh} < Q);\n`;
      }
      value = (i, hh) => `c${i}_${hh} + bias${hh}`;
    }
    emit = (i, hh) => `put(row, col${hh}, ${value(i, hh)});`;
  } else {
    bindings += `@group(0) @binding(2) var<storage, read_write> part: array<${
      vecOut ? "vec4f" : "f32"
    }>;\n`;
    emit = (i, hh) => {
      const o = `wg.z * ${g.R * g.Q}u + row * Q + col${hh}`;
      if (vecOut) return `part[(${o}) / 4u] = ${value(i, hh)};`;
      return `{ let o = ${o}; let v = ${value(i, hh)}; part[o] = v.x; ` +
        [1, 2, 3].map((c) => `if (col${hh} + ${c}u < Q) { part[o + ${c}u] = v.${"xyzw"[c]}; }`)
          .join(" ") +
        " }";
    };
  }
  for (let gi = 0; gi < rg; gi++) {
    for (let r = 0; r < 4; r++) {
      const i = gi * 4 + r;
      ep += `  {\n    let row = r0 + ${off(gi, wy, "ty")} + ${r}u;\n`;
      if (rowCheck) ep += `    if (row < R) {\n`;
      for (let hh = 0; hh < cg; hh++) {
        ep += colCheck ? `    if (col${hh} < Q) { ${emit(i, hh)} }\n` : `    ${emit(i, hh)}\n`;
      }
      if (rowCheck) ep += `    }\n`;
      ep += `  }\n`;
    }
  }
  const f16 = g.f16 || (epi !== null && anyF16(tensors));
  const vty = h8 ? "mat2x4<f16>" : g.f16 ? "vec4<f16>" : "vec4f";
  const src = specialise(sections.gemm, {
    ENABLE: f16 ? "enable f16;" : "",
    BINDINGS: bindings,
    R: g.R,
    Q: g.Q,
    L: g.L,
    BK: bk,
    KPER: p.kper,
    SHARED: sharedDecl(As, vty) + sharedDecl(Bs, vty),
    HELPERS: helpers,
    THREADS: wx * wy,
    THREAD: threadCode(p.tile),
    ORIGIN: origin(g, p),
    DECLS: decls,
    MAIN: main,
    EPILOGUE: ep,
  });
  return { code: src, tensors };
}

function reduceCode(g: Gemm, splits: number, epi: Epilogue): { code: string; tensors: Tensor[] } {
  const vec = g.Q % 4 === 0;
  const e = epilogueCode(epi, g.R, g.Q, 1);
  const QG = cdiv(g.Q, 4);
  const at = (off: string) => vec ? `part[(${off}) / 4u]` : `ld(${off})`;
  let sum = `  var v = ${at("e")};\n` +
    `  for (var s = 1u; s < SPLITS; s++) { v += ${at("s * RQ + e")}; }\n`;
  if (epi.bias) sum += `  v += ${e.bias("col")};\n`;
  const ld = vec
    ? ""
    : `fn ld(j: u32) -> vec4f {\n  return vec4f(${
      [0, 1, 2, 3].map((c) => `part[min(j + ${c}u, ${splits * g.R * g.Q - 1}u)]`).join(", ")
    });\n}\n`;
  return {
    code: specialise(sections.reduce, {
      ENABLE: anyF16(e.tensors) ? "enable f16;" : "",
      PT: vec ? "vec4f" : "f32",
      BINDINGS: e.decls,
      R: g.R,
      Q: g.Q,
      QG,
      COUNT: g.R * QG,
      SPLITS: splits,
      RQ: g.R * g.Q,
      HELPERS: ld + e.helpers,
      SUM: sum,
    }),
    tensors: e.tensors,
  };
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

/** The tiling, splits and grid a call would use (for benchmarks and logs). */
export function describePlan(
  k: Kernels,
  g: Gemm,
  opts: LinearOptions = {},
): { tile: Required<Tile>; splits: number; swizzle: number; vec: boolean; cls: ShapeClass } {
  const p = plan(
    g,
    opts,
    "linear",
    k.gpu.isFallback,
    k.device.limits.maxComputeWorkgroupStorageSize,
  );
  return { tile: p.tile, splits: p.splits, swizzle: p.swizzle, vec: p.vec, cls: shapeClass(g) };
}

function gemm(
  k: Kernels,
  name: string,
  g: Gemm,
  a: Tensor,
  b: Tensor,
  epi: Epilogue,
  opts: LinearOptions,
): Dispatch[] {
  const p = plan(g, opts, name, k.gpu.isFallback, k.device.limits.maxComputeWorkgroupStorageSize);
  const BM = blockM(p.tile), BN = blockN(p.tile);
  const threads = p.tile.wx * p.tile.wy;
  const shared = sharedBytes(p.tile, g.f16);
  const limit = k.device.limits.maxComputeWorkgroupStorageSize;
  if (shared > limit) {
    throw new Error(
      `${name}: tile needs ${shared} bytes of workgroup memory, device allows ${limit}`,
    );
  }
  if (threads > k.device.limits.maxComputeInvocationsPerWorkgroup) {
    throw new Error(`${name}: tile has ${threads} threads, device allows fewer`);
  }
  const wg: [number, number, number] = [cdiv(g.Q, BN), cdiv(g.R, BM), p.splits];
  if (wg[0] > 65535 || wg[1] > 65535) throw new Error(`${name}: too many tiles ${wg}`);
  const entry = `${name}_gemm`;
  if (p.splits === 1) {
    const s = gemmCode(g, p, epi);
    return [{ ...k.dispatch(s.code, "gemm", [a, b, ...s.tensors], wg), label: entry }];
  }
  const part = scratchTensor(k, p.splits * g.R * g.Q);
  const mm = k.dispatch(gemmCode(g, p, null).code, "gemm", [a, b, part], wg);
  const r = reduceCode(g, p.splits, epi);
  const red = k.dispatch(
    r.code,
    "reduce_splits",
    [part, ...r.tensors],
    cdiv(g.R * cdiv(g.Q, 4), 256),
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

/** Both operands f16 (packed f16 products) or both 4-byte (f32). */
function precision(name: string, a: Tensor, an: string, b: Tensor, bn: string): boolean {
  const da: DType = a.dtype ?? "f32", dbt: DType = b.dtype ?? "f32";
  if ((da === "f16") !== (dbt === "f16")) {
    throw new Error(
      `${name}: ${an} is ${da} but ${bn} is ${dbt}; give both operands one precision ` +
        `(cast with castF32ToF16 / castF16ToF32 from src/ops/cast.ts)`,
    );
  }
  return da === "f16";
}

function sameSize(name: string, t: Tensor | undefined, n: number, what: string): void {
  if (t && t.length !== n) {
    throw new Error(`${name}: ${what} has ${t.length} elements, expected ${n}`);
  }
}

/** Options only a forward (or a dX) takes. */
function rejectEpilogue(name: string, opts: LinearOptions, allowed: string[]): void {
  for (const key of ["gelu", "pre", "gate", "residual", "geluGrad"] as const) {
    if (opts[key] && !allowed.includes(key)) {
      throw new Error(`${name}: option ${key} is not supported here`);
    }
  }
}

function baseEpilogue(out: Tensor, opts: LinearOptions): Epilogue {
  return {
    out,
    accumulate: opts.accumulate ?? false,
    bias: null,
    pre: null,
    gelu: false,
    gate: null,
    residual: null,
    geluGrad: null,
  };
}

/**
 * y = x·wᵀ + b (accumulate: y += x·wᵀ + b), with the fused epilogues of LinearOptions (gelu,
 * gate, residual, pre). x [M,K] (leading dims flattened into M), w [N,K] (PyTorch (out,in)
 * layout), b [N] or null, y [M,N]. x and w both f32 or both f16; y, b, pre, residual and the
 * gate's mod each f32 or f16.
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
  rejectEpilogue(name, opts, ["gelu", "pre", "gate", "residual"]);
  const f16 = precision(name, x, "x", w, "w");
  sameSize(name, opts.pre, M * N, "pre");
  sameSize(name, opts.residual, M * N, "residual");
  const epi = baseEpilogue(y, opts);
  epi.bias = b;
  epi.pre = opts.pre ?? null;
  epi.gelu = opts.gelu ?? false;
  epi.residual = opts.residual ?? null;
  if (opts.gate) {
    const { mod, chunk } = opts.gate;
    const [B, width] = dims(name, mod, "gate mod");
    if (M % B !== 0) throw new Error(`${name}: ${M} rows do not split into ${B} samples`);
    if (!Number.isInteger(chunk) || chunk < 0 || (chunk + 1) * N > width) {
      throw new Error(`${name}: gate chunk ${chunk} of width ${N} exceeds mod's ${width} columns`);
    }
    epi.gate = { mod, T: M / B, stride: width, offset: chunk * N };
  }
  if (epi.gelu && epi.gate) throw new Error(`${name}: gelu and gate together are not supported`);
  return gemm(k, name, { R: M, Q: N, L: K, a: "rl", b: "ql", f16 }, x, w, epi, opts);
}

/**
 * dx = dy·w (accumulate: dx += dy·w); with `geluGrad: h`, dx = (dy·w) ⊙ gelu'(h). dy [M,N],
 * w [N,K], dx [M,K]; dy and w both f32 or both f16.
 */
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
  rejectEpilogue(name, opts, ["geluGrad"]);
  const f16 = precision(name, dy, "dy", w, "w");
  sameSize(name, opts.geluGrad, M * K, "geluGrad");
  const epi = baseEpilogue(dx, opts);
  epi.geluGrad = opts.geluGrad ?? null;
  return gemm(k, name, { R: M, Q: K, L: N, a: "rl", b: "lq", f16 }, dy, w, epi, opts);
}

/**
 * dw = dyᵀ·x and db = column sums of dy (accumulate: +=). dy [M,N], x [M,K], dw [N,K],
 * db [N] or null; dy and x both f32 or both f16 (dw, db f32 for gradients). Deterministic:
 * split-K partials and the column sums are reduced in fixed order.
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
  rejectEpilogue(name, opts, []);
  const f16 = precision(name, dy, "dy", x, "x");
  const g: Gemm = { R: N, Q: K, L: M, a: "lr", b: "lq", f16 };
  const out = gemm(k, name, g, dy, x, baseEpilogue(dw, opts), opts);
  if (db) out.push(...columnSums(k, dy, M, N, db, opts.accumulate ?? false));
  return out;
}

/** db (=, +=) Σ_rows dy, in two fixed-order stages (f32 sums). */
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
  // Enough (chunk, column) threads to fill the GPU, chunks a multiple of 4 rows, and at least
  // √M rows: the final stage sums nchunk values a column in one thread (dW + db of a 25088×4 dy
  // took 0.38 ms on an H200 with 6272 chunks of 4 rows; √M balances the two serial sums).
  const chunk = Math.max(4, Math.ceil(M * cols / 16384 / 4) * 4, Math.ceil(Math.sqrt(M) / 4) * 4);
  const nchunk = cdiv(M, chunk);
  const A = vec ? "vec4f" : "f32";
  const el = (t: DType | undefined) => vec ? `vec4<${t ?? "f32"}>` : (t ?? "f32");
  const dt = db.dtype === "f16" ? "f16" : "f32";
  const consts = (S: string, D: string, f16: boolean) => ({
    ENABLE: f16 ? "enable f16;" : "",
    S,
    D,
    A,
    ROWS: M,
    COLS: cols,
    CHUNK: chunk,
    NCHUNK: nchunk,
    FINISH: accumulate ? `  dst[col] = ${D}(${A}(dst[col]) + s);` : `  dst[col] = ${D}(s);`,
  });
  const partSrc = specialise(sections.colsum, consts(el(dy.dtype), A, dy.dtype === "f16"));
  const finalSrc = specialise(sections.colsum, consts(A, el(dt), dt === "f16"));
  const part = k.tensor([nchunk * N], "linear db partial sums");
  return [
    { ...k.dispatch(partSrc, "colsum_part", [dy, part], [cdiv(cols, 64), nchunk, 1]) },
    { ...k.dispatch(finalSrc, "colsum_final", [part, db], [cdiv(cols, 64), 1, 1]) },
  ].map((d, i) => ({ ...d, label: i ? "linear_db_final" : "linear_db_part" }));
}
