/**
 * f16 linear kernels against the float64 reference, computed from the same f16-rounded inputs.
 *
 * Tolerance, per output element, for an f16 GEMM summing K products p_l = a_l·b_l (exact in f64):
 * each f16 lane takes at most C products (C = the tile's chunk) through f16 fma, so its error is
 * at most γ_C·Σ|p| with γ_C = C·u/(1 − C·u), u = 2^-11 (plus 2^-25 per step below f16's normal
 * range); the f32 side adds at most (2·⌈K/C⌉ + splits + 4)·2^-24·Σ|p| (flushes, split sums, bias);
 * an f16 output adds u·|value|. So
 *
 *   |got − ref| ≤ (γ_C + (2⌈K/C⌉ + splits + 4)·2^-24)·Σ_l|a_l b_l| + K·2^-25
 *                 + u_out·(|ref| + that) + 2^-22·(|bias| + |initial output|)
 *
 * with u_out = 2^-11 for f16 outputs (2^-24 for f32). It is a rigorous bound, still tight enough
 * to fail a kernel that accumulates in f16 throughout (last test) or drops one product.
 * Epilogues propagate it: gelu through |gelu'|, the gate through |gate|, plus their f32
 * evaluation (1e-6 relative) and the output rounding.
 */
import * as ref from "./reference/linear.ts";
import { gelu, geluBackward } from "./reference/ops.ts";
import { gateResidual } from "./reference/residual.ts";
import { kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import type { DType, Kernels, Tensor } from "../src/gpu/kernels.ts";
import {
  DEFAULTS,
  describePlan,
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
  type Tile,
} from "../src/ops/linear.ts";

type F64 = Float64Array;
const U16 = 2 ** -11, U32 = 2 ** -24;

/** Round to the nearest f16 (JS's Float16Array: round to nearest even). */
const r16 = (a: F64): F64 => Float64Array.from(new Float16Array(a));
const abs = (a: F64): F64 => a.map(Math.abs);

/** The bound on the accumulation error of one output, given Σ|p| (see the header). */
function accBound(sumAbs: number, K: number, chunk: number, splits: number): number {
  const C = Math.min(chunk === 0 ? K : chunk, K);
  const gamma = C * U16 / (1 - C * U16);
  return (gamma + (2 * Math.ceil(K / C) + splits + 4) * U32) * sumAbs + K * 2 ** -25;
}

/** Throws unless |got − want| ≤ tol elementwise; returns the worst error/tol ratio. */
function assertWithin(label: string, got: ArrayLike<number>, want: F64, tol: F64): number {
  let worst = 0, wi = 0;
  for (let i = 0; i < want.length; i++) {
    const r = Math.abs(got[i] - want[i]) / tol[i];
    if (!(r <= worst)) { // NaN-safe
      worst = Number.isNaN(r) ? Infinity : r;
      wi = i;
    }
  }
  if (!(worst <= 1)) {
    throw new Error(
      `${label}: error ${Math.abs(got[wi] - want[wi]).toExponential(3)} at [${wi}] exceeds ` +
        `its bound ${tol[wi].toExponential(3)} (got ${got[wi]}, want ${
          want[wi]
        }, seed ${TEST_SEED})`,
    );
  }
  return worst;
}

function tensor(k: Kernels, data: F64, shape: number[], dtype: DType = "f32"): Tensor {
  const t = k.tensor(shape, "t", dtype === "f16" ? "f16" : undefined);
  k.write(t, Float32Array.from(data));
  return t;
}

interface F16Case {
  tile?: Tile;
  splits?: number;
  bias?: DType | null;
  /** Output dtype of the forward and dX (dW and db are f32). */
  out?: DType;
  accumulate?: boolean;
}

/** Forward, dX and dW + db with f16 operands at one shape, each against its bound. */
async function f16Linear(name: string, M: number, N: number, K: number, c: F16Case) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ (M * 7919 + N * 31 + K));
  const out = c.out ?? "f16", biasT = c.bias === undefined ? "f32" : c.bias;
  const chunk = c.tile ? (c.tile.chunk ?? c.tile.bk) : 8;
  const splits = c.splits ?? 1;
  const opts: LinearOptions = { tile: c.tile, splits: c.splits, accumulate: c.accumulate };
  const x = r16(rng.normals(M * K)), w = r16(rng.normals(N * K)), dy = r16(rng.normals(M * N));
  const b = biasT === null ? null : biasT === "f16" ? r16(rng.normals(N)) : rng.normals(N);
  const uOut = out === "f16" ? U16 : U32;
  const init = (n: number, dt: DType) => {
    const v = c.accumulate ? rng.normals(n) : new Float64Array(n).fill(NaN);
    return dt === "f16" ? r16(v) : v;
  };
  const xt = tensor(k, x, [M, K], "f16"), wt = tensor(k, w, [N, K], "f16");
  const dyt = tensor(k, dy, [M, N], "f16");
  const bt = b && tensor(k, b, [N], biasT ?? "f32");
  const ratios: string[] = [];
  const check = async (
    what: string,
    t: Tensor,
    y0: F64,
    want: F64,
    sumAbs: F64,
    L: number,
    u: number,
    extra: (i: number) => number,
  ) => {
    const total = want.map((v, i) => c.accumulate ? v + y0[i] : v);
    const tol = want.map((_, i) => {
      const acc = accBound(sumAbs[i], L, chunk, splits);
      return acc + u * (Math.abs(total[i]) + acc) + 2 ** -25 + extra(i) +
        (c.accumulate ? 2 ** -22 * Math.abs(y0[i]) : 0);
    });
    const r = assertWithin(`${name} ${what}`, await k.read(t), total, tol);
    ratios.push(`${what} ${r.toFixed(3)}`);
  };
  // Forward.
  const y0 = init(M * N, out);
  const yt = tensor(k, y0, [M, N], out);
  await k.run(linearForward(k, xt, wt, bt, yt, opts));
  await check(
    "y",
    yt,
    y0,
    ref.linear(x, w, b, M, N, K),
    ref.linear(abs(x), abs(w), null, M, N, K),
    K,
    uOut,
    (i) => b ? 2 ** -22 * Math.abs(b[i % N]) : 0,
  );
  // dX and dW (+db).
  const g = ref.linearBackward(x, w, dy, M, N, K);
  const ga = ref.linearBackward(abs(x), abs(w), abs(dy), M, N, K);
  const dx0 = init(M * K, out), dw0 = init(N * K, "f32"), db0 = init(N, "f32");
  const dxt = tensor(k, dx0, [M, K], out);
  const dwt = tensor(k, dw0, [N, K]), dbt = tensor(k, db0, [N]);
  await k.run([
    ...linearBackwardInput(k, dyt, wt, dxt, opts),
    ...linearBackwardWeight(k, dyt, xt, dwt, dbt, opts),
  ]);
  await check("dx", dxt, dx0, g.dx, ga.dx, N, uOut, () => 0);
  await check("dw", dwt, dw0, g.dw, ga.dw, M, U32, () => 0);
  // db: f32 sums of f16 values, (M + 4)·2^-24·Σ|dy| (chunked fixed-order sums).
  const dbWant = g.db.map((v, i) => c.accumulate ? v + db0[i] : v);
  const dbTol = ga.db.map((s, i) => (M + 4) * U32 * (s + Math.abs(db0[i] || 0)) + 1e-30);
  const r = assertWithin(`${name} db`, await k.read(dbt), dbWant, dbTol);
  ratios.push(`db ${r.toFixed(3)}`);
  console.log(`  ${name}: worst error / bound: ${ratios.join(", ")}`);
}

// bk 8 tiles keep llvmpipe's compile time down; the GPU defaults use 16-32.
const big: Tile = { rg: 2, cg: 2, wx: 8, wy: 16, bk: 8 };
const small: Tile = { rg: 1, cg: 1, wx: 8, wy: 8, bk: 8 };
const cases: [string, number, number, number, F16Case][] = [
  ["splat big", 130, 68, 40, { tile: big }],
  ["pair big, f16 bias, f32 out", 130, 68, 40, {
    tile: { ...big, form: "pair" },
    bias: "f16",
    out: "f32",
  }],
  ["splat scalar widths, xfast, f16 bias", 67, 45, 38, {
    tile: { ...small, xfast: true },
    bias: "f16",
  }],
  ["pair bk 16, chunk 16", 67, 44, 84, { tile: { ...small, bk: 16, form: "pair" } }],
  ["pair scalar widths", 67, 45, 38, { tile: { ...small, form: "pair" } }],
  ["splat chunk 16 over bk 8, split-K, accumulate", 70, 44, 300, {
    tile: { ...small, chunk: 16 },
    splits: 3,
    out: "f32",
    accumulate: true,
  }],
  ["pair chunk 4, xfast, single buffer, 8x4 warps", 70, 72, 40, {
    tile: {
      rg: 1,
      cg: 1,
      wx: 16,
      wy: 8,
      bk: 8,
      form: "pair",
      chunk: 4,
      xfast: true,
      db: false,
      wtx: 8,
    },
    bias: null,
  }],
  ["splat flat arrays, accumulate f16", 130, 68, 36, {
    tile: { ...big, flat: true },
    accumulate: true,
  }],
  ["pair 16x8 per thread, split-K", 70, 68, 200, {
    tile: { rg: 4, cg: 2, wx: 8, wy: 4, bk: 8, form: "pair" },
    splits: 2,
  }],
  ["swap big", 130, 68, 40, { tile: { ...big, form: "swap" } }],
  ["swap scalar widths, flat, f16 bias, f32 out", 67, 45, 38, {
    tile: { ...small, form: "swap", flat: true },
    bias: "f16",
    out: "f32",
  }],
  ["swap chunk 16 over bk 8, 16x8 per thread, split-K, accumulate", 70, 68, 200, {
    tile: { rg: 4, cg: 2, wx: 8, wy: 4, bk: 8, form: "swap", chunk: 16 },
    splits: 2,
    accumulate: true,
  }],
  ["swap chunk 4, xfast, single buffer, 8x4 warps", 70, 72, 40, {
    tile: {
      rg: 1,
      cg: 1,
      wx: 16,
      wy: 8,
      bk: 8,
      form: "swap",
      chunk: 4,
      xfast: true,
      db: false,
      wtx: 8,
    },
  }],
  ["swap h8 (16-byte tiles), f16 bias", 130, 68, 40, {
    tile: { ...big, form: "swap", h8: true },
    bias: "f16",
  }],
  ["splat h8, scalar widths, flat, xfast", 67, 45, 38, {
    tile: { rg: 2, cg: 2, wx: 8, wy: 4, bk: 8, h8: true, flat: true, xfast: true },
  }],
  ["swap h8, 16x8 per thread, chunk 16, split-K, f32 out", 70, 68, 200, {
    tile: { rg: 4, cg: 2, wx: 8, wy: 4, bk: 8, form: "swap", chunk: 16, h8: true },
    splits: 2,
    out: "f32",
  }],
  ["splat wacc (f32 sums in workgroup memory)", 130, 68, 40, {
    tile: { rg: 2, cg: 2, wx: 8, wy: 8, bk: 8, wacc: true },
  }],
  ["pair wacc, chunk 4, scalar widths, split-K, accumulate", 67, 45, 120, {
    tile: { ...small, form: "pair", wacc: true, chunk: 4 },
    splits: 2,
    out: "f32",
    accumulate: true,
  }],
  ["swap wacc h8 flat, 16x8 per thread, chunk 24 over bk 8", 70, 68, 76, {
    tile: {
      rg: 4,
      cg: 2,
      wx: 8,
      wy: 4,
      bk: 8,
      form: "swap",
      chunk: 24,
      wacc: true,
      h8: true,
      flat: true,
    },
  }],
  ["swap 4x4-block loads, h8, chunk 16 over bk 8", 130, 68, 40, {
    tile: { ...big, form: "swap", blocks: true, h8: true, chunk: 16 },
  }],
  ["splat 4x4-block loads, flat, single buffer, f16 bias", 70, 44, 36, {
    tile: { ...small, blocks: true, flat: true, db: false },
    bias: "f16",
  }],
  ["swap, one variable per buffer, blocks, h8, chunk 16", 130, 68, 40, {
    tile: { ...big, form: "swap", sep: true, blocks: true, h8: true, chunk: 16 },
  }],
  ["pair, one variable per buffer, flat, split-K", 70, 44, 120, {
    tile: { ...small, form: "pair", sep: true, flat: true },
    splits: 3,
  }],
  ["defaults", 50, 64, 48, {}],
];
for (const [what, M, N, K, c] of cases) {
  Deno.test(`linear f16 ${what}`, () => f16Linear(`linear f16 ${what}`, M, N, K, c));
}

// A default the device's workgroup memory cannot hold (wacc at 16x8 a thread needs 37 KB at
// the CPU adapter's BK 8; it allows 32 KB) falls back to register sums, still correct.
Deno.test("linear f16: a default too large for workgroup memory falls back", async () => {
  const k = await kernels();
  const saved = DEFAULTS.f16.small;
  // wacc alone needs 8·8 threads × 16 vec4 slots × 64 B = 64 KiB, beyond any adapter's 32–48 KiB;
  // without it the tiles fit (16 KiB at BK 16; software adapters clamp BK to 8 anyway).
  DEFAULTS.f16.small = {
    tile: { rg: 4, cg: 4, wx: 8, wy: 8, bk: 16, form: "swap", wacc: true, h8: true },
  };
  try {
    const g = { R: 260, Q: 130, L: 72, a: "rl", b: "ql", f16: true } as const;
    const p = describePlan(k, g);
    const bk = k.gpu.isFallback ? 8 : 16;
    if (p.cls !== "small" || p.tile.wacc || !p.tile.h8 || p.tile.bk !== bk) {
      throw new Error(`unexpected fallback plan ${JSON.stringify(p)}`);
    }
    await f16Linear("linear f16 wacc default fallback", 260, 130, 72, {});
  } finally {
    DEFAULTS.f16.small = saved;
  }
});

/** Fused epilogues with f16 operands, f16 outputs and f16 side inputs. */
async function f16Epilogues(name: string, M: number, N: number, K: number, opts: LinearOptions) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xf16e ^ (N * 131 + K));
  const B = 3, T = M / B;
  const chunk = opts.tile ? (opts.tile.chunk ?? opts.tile.bk) : 8, splits = opts.splits ?? 1;
  const x = r16(rng.normals(M * K)), w = r16(rng.normals(N * K)), b = rng.normals(N);
  const v = ref.linear(x, w, b, M, N, K);
  const vTol = ref.linear(abs(x), abs(w), null, M, N, K).map((s, i) =>
    accBound(s, K, chunk, splits) + 2 ** -22 * Math.abs(b[i % N])
  );
  const xt = tensor(k, x, [M, K], "f16"), wt = tensor(k, w, [N, K], "f16");
  const bt = tensor(k, b, [N]);
  const f16Out = (shape: number[]) => {
    const t = k.tensor(shape, "out", "f16");
    k.fill(t, NaN);
    return t;
  };
  const ratios: string[] = [];
  const near = (what: string, got: Float32Array, want: F64, tol: F64) =>
    ratios.push(`${what} ${assertWithin(`${name} ${what}`, got, want, tol).toFixed(3)}`);
  const preTol = vTol.map((t, i) => t + U16 * (Math.abs(v[i]) + t) + 2 ** -25);
  // gelu + pre.
  const y = f16Out([M, N]), pre = f16Out([M, N]);
  await k.run(linearForward(k, xt, wt, bt, y, { ...opts, gelu: true, pre }));
  const gy = gelu(v), slope = geluBackward(v, new Float64Array(v.length).fill(1));
  near("pre", await k.read(pre), v, preTol);
  near(
    "gelu",
    await k.read(y),
    gy,
    gy.map((g, i) =>
      Math.abs(slope[i]) * vTol[i] * 1.01 + U16 * Math.abs(g) + 1e-6 * (1 + Math.abs(v[i])) +
      2 ** -25
    ),
  );
  // gate + residual + pre (mod and residual f16 too).
  const mod = r16(rng.normals(B * 6 * N)), res = r16(rng.normals(M * N));
  const gated = f16Out([M, N]), pre2 = f16Out([M, N]);
  await k.run(linearForward(k, xt, wt, bt, gated, {
    ...opts,
    gate: { mod: tensor(k, mod, [B, 6 * N], "f16"), chunk: 2 },
    residual: tensor(k, res, [M, N], "f16"),
    pre: pre2,
  }));
  const want = gateResidual(res, v, mod, B, T, N, 2);
  near("pre (gate)", await k.read(pre2), v, preTol);
  near(
    "gate",
    await k.read(gated),
    want,
    want.map((o, i) => {
      const g = Math.abs(mod[Math.floor(i / (T * N)) * 6 * N + 2 * N + (i % N)]);
      return g * vTol[i] * 1.01 + U16 * Math.abs(o) +
        4 * U32 * (Math.abs(res[i]) + g * Math.abs(v[i])) +
        2 ** -25;
    }),
  );
  // gelu' in dX: dh = (dy·w) ⊙ gelu'(h), with w [N,K] read as fc2's weight: dy [M,N].
  const dy = r16(rng.normals(M * N)), h = r16(rng.normals(M * K));
  const dh = f16Out([M, K]);
  await k.run(
    linearBackwardInput(k, tensor(k, dy, [M, N], "f16"), wt, dh, {
      ...opts,
      geluGrad: tensor(k, h, [M, K], "f16"),
    }),
  );
  const g = ref.linearBackward(new Float64Array(M * K), w, dy, M, N, K).dx;
  const gAbs = ref.linearBackward(new Float64Array(M * K), abs(w), abs(dy), M, N, K).dx;
  const hs = geluBackward(h, new Float64Array(h.length).fill(1));
  const dWant = g.map((d, i) => d * hs[i]);
  near(
    "gelu' dX",
    await k.read(dh),
    dWant,
    dWant.map((d, i) =>
      Math.abs(hs[i]) * accBound(gAbs[i], N, chunk, splits) * 1.01 + U16 * Math.abs(d) +
      1e-6 * Math.abs(g[i]) * (1 + Math.abs(h[i])) + 2 ** -25
    ),
  );
  console.log(`  ${name}: worst error / bound: ${ratios.join(", ")}`);
}

Deno.test("linear f16 epilogues, splat", () =>
  f16Epilogues("linear f16 epilogues splat", 69, 68, 40, { tile: big }));
Deno.test("linear f16 epilogues, pair, split-K reduce", () =>
  f16Epilogues("linear f16 epilogues pair split", 69, 44, 120, {
    tile: { ...small, form: "pair" },
    splits: 3,
  }));
Deno.test("linear f16 epilogues, swap", () =>
  f16Epilogues("linear f16 epilogues swap", 69, 68, 40, { tile: { ...big, form: "swap" } }));
Deno.test("linear f16 epilogues, scalar widths", () =>
  f16Epilogues("linear f16 epilogues scalar", 69, 45, 38, { tile: small }));

// The bound is tight enough to matter: summing K = 8192 positive products in f16 throughout
// (chunk 0) stalls once the running sum's spacing exceeds the products (4 at 4096, products
// ≤ 2.25), so that kernel must fail the chunked kernel's bound, while the chunked kernel passes.
Deno.test("linear f16: f32 accumulation is necessary at large K (all-f16 fails the bound)", async () => {
  const k = await kernels();
  const [M, N, K] = [20, 12, 8192];
  const rng = new Rng(TEST_SEED ^ 0xacc);
  const pos = (n: number) => r16(Float64Array.from({ length: n }, () => 0.5 + rng.uniform()));
  const x = pos(M * K), w = pos(N * K);
  const want = ref.linear(x, w, null, M, N, K);
  const sumAbs = ref.linear(abs(x), abs(w), null, M, N, K);
  const xt = tensor(k, x, [M, K], "f16"), wt = tensor(k, w, [N, K], "f16");
  const run = async (tile: Tile) => {
    const y = k.tensor([M, N]);
    await k.run(linearForward(k, xt, wt, null, y, { tile }));
    return await k.read(y);
  };
  const tol = sumAbs.map((s, i) => accBound(s, K, 8, 1) + U32 * Math.abs(want[i]) + 2 ** -25);
  for (const form of ["splat", "pair", "swap"] as const) {
    const ok = assertWithin(`chunked ${form}`, await run({ ...small, form }), want, tol);
    let failed = "";
    try {
      assertWithin(`all-f16 ${form}`, await run({ ...small, form, chunk: 0 }), want, tol);
    } catch (e) {
      failed = (e as Error).message;
    }
    if (!failed) throw new Error(`all-f16 accumulation (${form}) met the bound: too loose`);
    console.log(`  ${form}: chunked error/bound ${ok.toFixed(3)}; all-f16: ${failed}`);
  }
});

Deno.test("linear f16: mixed operand precisions are refused with a hint", async () => {
  const k = await kernels();
  const x = k.tensor([4, 8], "x", "f16"), w = k.tensor([4, 8]), y = k.tensor([4, 4]);
  let msg = "";
  try {
    linearForward(k, x, w, null, y);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("castF32ToF16")) throw new Error(`unclear error: ${msg}`);
});
