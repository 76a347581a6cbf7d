import * as ref from "./reference/linear.ts";
import { gelu, geluBackward } from "./reference/ops.ts";
import { gateResidual } from "./reference/residual.ts";
import { assertClose, checkOp, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
  type Tile,
} from "../src/ops/linear.ts";

/** Forward, dX and dW (+db) of one variant at one shape, checked against float64. */
function linearCase(
  name: string,
  M: number,
  N: number,
  K: number,
  opts: LinearOptions,
  { bias = true, accumulate = false } = {},
) {
  return checkOp({
    name,
    inputs: bias ? { x: [M, K], w: [N, K], b: [N] } : { x: [M, K], w: [N, K] },
    outputs: { y: [M, N] },
    ref: ({ x, w, b }) => ({ y: ref.linear(x, w, b ?? null, M, N, K) }),
    refBackward: ({ x, w }, { y }): Record<string, Float64Array> => {
      const g = ref.linearBackward(x, w, y, M, N, K);
      return bias ? { x: g.dx, w: g.dw, b: g.db } : { x: g.dx, w: g.dw };
    },
    gpu: (k, t) => linearForward(k, t.x, t.w, bias ? t.b : null, t.y, opts),
    gpuBackward: (k, t) => [
      ...linearBackwardInput(k, t.dy, t.w, t.dx, { ...opts, accumulate }),
      ...linearBackwardWeight(k, t.dy, t.x, t.dw, bias ? t.db : null, { ...opts, accumulate }),
    ],
    accumulate: accumulate ? ["x", "w", "b"] : undefined,
  });
}

// Ragged shapes spanning several tiles. vec4 access needs N and K multiples of 4; other widths
// take the scalar path whatever the variant.
Deno.test("linear small (vec4)", () =>
  linearCase("linear small", 67, 44, 36, { variant: "small" }));
Deno.test("linear small (ragged widths)", () =>
  linearCase("linear small ragged", 67, 45, 38, { variant: "small", swizzle: 2 }));
Deno.test("linear scalar", () => linearCase("linear scalar", 67, 45, 38, { variant: "scalar" }));
Deno.test("linear scalar (vec4 widths)", () =>
  linearCase("linear scalar vec-widths", 37, 44, 36, { variant: "scalar" }));
Deno.test("linear mid", () => linearCase("linear mid", 70, 68, 40, { variant: "mid" }));
Deno.test("linear big", () => linearCase("linear big", 130, 132, 36, { variant: "big" }));
Deno.test("linear wide", () => linearCase("linear wide", 70, 136, 20, { variant: "wide" }));
Deno.test("linear big (ragged widths)", () =>
  linearCase("linear big ragged", 130, 131, 37, { variant: "big" }));
Deno.test("linear splitk", () =>
  linearCase("linear splitk", 140, 36, 300, { variant: "splitk", splits: 3 }));
Deno.test("linear small split (ragged)", () =>
  linearCase("linear small split", 70, 45, 83, { variant: "small", splits: 3 }));
Deno.test("linear accumulate", () =>
  linearCase("linear accumulate", 67, 44, 36, { variant: "small" }, { accumulate: true }));
Deno.test("linear accumulate splitk", () =>
  linearCase("linear accumulate splitk", 140, 36, 300, { variant: "splitk", splits: 3 }, {
    accumulate: true,
  }));
Deno.test("linear accumulate scalar, no bias", () =>
  linearCase("linear accumulate scalar", 33, 45, 38, { variant: "scalar" }, {
    bias: false,
    accumulate: true,
  }));
Deno.test("linear default variant", () => linearCase("linear default", 50, 64, 48, {}));

// The tiling switches the sweep explores, each forced on ragged multi-tile shapes (bk 8 keeps
// llvmpipe's compile time down; vec4 and scalar global access where the switch matters).
const big8: Tile = { rg: 2, cg: 2, wx: 8, wy: 16, bk: 8 };
const switches: [string, number, number, number, Tile][] = [
  ["flat arrays (pre-sweep code)", 130, 132, 36, { ...big8, flat: true }],
  ["xfast loads", 130, 68, 36, { ...big8, xfast: true }],
  ["xfast loads (ragged widths)", 130, 67, 37, { ...big8, xfast: true }],
  ["single buffer", 130, 68, 44, { ...big8, db: false }],
  ["single buffer, flat (ragged widths)", 70, 45, 38, { ...big8, db: false, flat: true }],
  ["warp-tiled threads", 70, 136, 20, { rg: 2, cg: 2, wx: 16, wy: 8, bk: 8, wtx: 8 }],
  ["bk 16, 4x8 warps", 67, 44, 52, { rg: 1, cg: 1, wx: 8, wy: 8, bk: 16, wtx: 4 }],
  ["16x8 per thread", 70, 68, 36, { rg: 4, cg: 2, wx: 8, wy: 4, bk: 8 }],
  ["4x4-block loads (ragged rows)", 130, 68, 36, { ...big8, blocks: true }],
  ["one variable per buffer (5 tiles)", 130, 68, 36, { ...big8, sep: true }],
  ["one variable per buffer, flat, blocks (4 tiles, ragged widths)", 70, 45, 32, {
    ...big8,
    sep: true,
    flat: true,
    blocks: true,
  }],
  ["4x4-block loads, flat, 16x8 per thread, bk 16", 70, 68, 52, {
    rg: 4,
    cg: 2,
    wx: 8,
    wy: 4,
    bk: 16,
    blocks: true,
    flat: true,
  }],
  ["4x4-block loads, single buffer (ragged widths: scalar path)", 70, 45, 38, {
    ...big8,
    blocks: true,
    db: false,
  }],
];
for (const [what, M, N, K, tile] of switches) {
  Deno.test(`linear tile: ${what}`, () => linearCase(`linear ${what}`, M, N, K, { tile }));
}
// The probe's compute-only kernel (tasks/matmul_bench.ts --probe): exact when L fits one tile;
// past that it must skip the later tiles (else it would not measure the loop alone).
Deno.test("linear compute-only probe kernel", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xc0);
  const [M, N] = [70, 68];
  for (const [K, exact] of [[8, true], [24, false]] as const) {
    const x = rng.normals(M * K), w = rng.normals(N * K);
    const t = (a: Float64Array, shape: number[]) => {
      const tt = k.tensor(shape);
      k.write(tt, Float32Array.from(a));
      return tt;
    };
    for (const [db, sep] of [[true, false], [false, false], [true, true]]) {
      const y = k.tensor([M, N]);
      await k.run(linearForward(k, t(x, [M, K]), t(w, [N, K]), null, y, {
        tile: { ...big8, db, sep, computeOnly: true },
      }));
      const got = await k.read(y), want = ref.linear(x, w, null, M, N, K);
      const label = `compute-only K ${K} db ${db} sep ${sep}`;
      if (exact) assertClose(label, got, want);
      else if (got.every((v, i) => Math.abs(v - want[i]) < 1e-3 * (1 + Math.abs(want[i])))) {
        throw new Error(`${label}: matches the full product, so later tiles were not skipped`);
      }
    }
  }
});
Deno.test("linear rolled inner loop", () =>
  linearCase("linear rolled", 70, 68, 40, { tile: big8, unroll: 4 }));

// Fused epilogues (forward-only checks; the backward they replace is elementwise).
const T = 23, B = 3; // rows = B·T tokens, T not a multiple of any tile
function epilogueCases(name: string, N: number, K: number, opts: LinearOptions) {
  const M = B * T;
  Deno.test(`linear gelu epilogue ${name}`, () =>
    checkOp({
      name: `linear gelu ${name}`,
      inputs: { x: [M, K], w: [N, K], b: [N] },
      outputs: { y: [M, N], pre: [M, N] },
      ref: ({ x, w, b }) => {
        const pre = ref.linear(x, w, b, M, N, K);
        return { y: gelu(pre), pre };
      },
      gpu: (k, t) => linearForward(k, t.x, t.w, t.b, t.y, { ...opts, gelu: true, pre: t.pre }),
    }));
  Deno.test(`linear gelu' dX epilogue ${name}`, () =>
    checkOp({
      name: `linear gelu' dX ${name}`,
      inputs: { dy: [M, N], w: [N, K], h: [M, K] },
      outputs: { dx: [M, K] },
      ref: ({ dy, w, h }) => ({
        dx: geluBackward(h, ref.linearBackward(new Float64Array(M * K), w, dy, M, N, K).dx),
      }),
      gpu: (k, t) => linearBackwardInput(k, t.dy, t.w, t.dx, { ...opts, geluGrad: t.h }),
    }));
  for (const chunk of [2, 5]) {
    Deno.test(`linear gate+residual epilogue ${name} chunk ${chunk}`, () =>
      checkOp({
        name: `linear gate ${name} chunk ${chunk}`,
        inputs: { x: [M, K], w: [N, K], b: [N], res: [M, N], mod: [B, 6 * N] },
        outputs: { y: [M, N], pre: [M, N] },
        ref: ({ x, w, b, res, mod }) => {
          const pre = ref.linear(x, w, b, M, N, K);
          return { y: gateResidual(res, pre, mod, B, T, N, chunk), pre };
        },
        gpu: (k, t) =>
          linearForward(k, t.x, t.w, t.b, t.y, {
            ...opts,
            gate: { mod: t.mod, chunk },
            residual: t.res,
            pre: t.pre,
          }),
      }));
  }
}
epilogueCases("big", 68, 36, { tile: big8 });
epilogueCases("split-K reduce", 44, 300, { variant: "small", splits: 3 });
epilogueCases("scalar widths", 45, 38, { variant: "small" });

Deno.test("linear gate without residual, accumulate (in-place residual stream)", async () => {
  const k = await kernels();
  const [M, N, K] = [B * T, 44, 36];
  const rng = new Rng(TEST_SEED ^ 0x6a7e);
  const x = rng.normals(M * K), w = rng.normals(N * K), b = rng.normals(N);
  const h = rng.normals(M * N), mod = rng.normals(B * 6 * N);
  const t = (a: Float64Array, shape: number[]) => {
    const tt = k.tensor(shape);
    k.write(tt, Float32Array.from(a));
    return tt;
  };
  const y = t(h, [M, N]);
  await k.run(linearForward(k, t(x, [M, K]), t(w, [N, K]), t(b, [N]), y, {
    gate: { mod: t(mod, [B, 6 * N]), chunk: 5 },
    accumulate: true,
  }));
  const want = gateResidual(h, ref.linear(x, w, b, M, N, K), mod, B, T, N, 5);
  assertClose("linear gate accumulate", await k.read(y), want);
});

/** Forward accumulate (y += x·wᵀ + b), which checkOp's NaN-poisoned outputs cannot cover. */
const fwdAccumulate: [string, number, number, number, LinearOptions][] = [
  ["small", 67, 44, 36, { variant: "small" }],
  ["big", 130, 132, 36, { variant: "big" }],
  ["splitk", 140, 36, 300, { variant: "splitk", splits: 3 }], // same GEMM as "linear splitk"
  ["scalar", 67, 45, 38, { variant: "scalar" }],
];
for (const [variant, M, N, K, opts] of fwdAccumulate) {
  Deno.test(`linear forward accumulate ${variant}`, async () => {
    const k = await kernels();
    const rng = new Rng(TEST_SEED ^ 0x51ed);
    const x = rng.normals(M * K), w = rng.normals(N * K), b = rng.normals(N);
    const y0 = rng.normals(M * N);
    const t = (a: Float64Array, shape: number[]) => {
      const tt = k.tensor(shape);
      k.write(tt, Float32Array.from(a));
      return tt;
    };
    const y = t(y0, [M, N]);
    await k.run(linearForward(k, t(x, [M, K]), t(w, [N, K]), t(b, [N]), y, {
      ...opts,
      accumulate: true,
    }));
    const want = ref.linear(x, w, b, M, N, K).map((v, i) => v + y0[i]);
    assertClose(`linear forward accumulate ${variant}`, await k.read(y), want);
  });
}

Deno.test("linear option errors", async () => {
  const k = await kernels();
  const x = k.tensor([6, 8]), w = k.tensor([4, 8]), y = k.tensor([6, 4]);
  const msg = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  const m1 = msg(() =>
    linearForward(k, x, w, null, y, { gate: { mod: k.tensor([4, 24]), chunk: 0 } })
  );
  if (!m1.includes("samples")) throw new Error(`unclear error: ${m1}`);
  const m2 = msg(() =>
    linearForward(k, x, w, null, y, { gate: { mod: k.tensor([2, 12]), chunk: 3 } })
  );
  if (!m2.includes("chunk 3")) throw new Error(`unclear error: ${m2}`);
  const m3 = msg(() => linearBackwardInput(k, y, w, x, { gelu: true }));
  if (!m3.includes("gelu")) throw new Error(`unclear error: ${m3}`);
  const m4 = msg(() => linearForward(k, x, w, null, y, { tile: { ...big8, bk: 6 } }));
  if (!m4.includes("bk")) throw new Error(`unclear error: ${m4}`);
});

Deno.test("linear shape errors", async () => {
  const k = await kernels();
  const x = k.tensor([5, 8]), w = k.tensor([6, 8]), y = k.tensor([5, 7]);
  let msg = "";
  try {
    linearForward(k, x, w, null, y);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("expected [5,6]")) throw new Error(`unclear error: ${msg}`);
  msg = "";
  try {
    linearForward(k, x, w, k.tensor([5]), k.tensor([5, 6]));
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("bias")) throw new Error(`unclear error: ${msg}`);
});
