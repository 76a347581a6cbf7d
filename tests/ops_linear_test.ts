import * as ref from "./reference/linear.ts";
import { assertClose, checkOp, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
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
