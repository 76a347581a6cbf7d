import * as ref from "./reference/norm.ts";
import { assertClose, checkOp, kernels, testF16, U16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { layerNormModulateBackward, layerNormModulateForward } from "../src/ops/norm.ts";

// nChunks = 6 as in a DiT block; shift/scale at chunks 3 and 4 (shift_mlp, scale_mlp).
function lnCase(B: number, T: number, D: number, accumulate: boolean, f16 = false) {
  const [SH, SC] = [3, 4];
  return checkOp({
    name: `layerNormModulate B${B} T${T} D${D}${accumulate ? " accumulate" : ""}${
      f16 ? " f16 y, dy" : ""
    }`,
    // f16: y is rounded once from the f32 value (relative error ≤ u = 2^-11 on top of the f32
    // kernel's 1e-4); dy is f16-rounded for the reference too, so dx and dmod keep f32's bound.
    f16: f16 ? ["y", "dy"] : [],
    tol: f16 ? U16 + 1e-4 : undefined,
    inputs: { x: [B, T, D], mod: [B, 6 * D] },
    scale: { x: 2, mod: 0.5 },
    outputs: { y: [B, T, D] },
    accumulate: accumulate ? ["x"] : [],
    ref: ({ x, mod }) => ({ y: ref.layerNormModulate(x, mod, B, T, D, SH, SC) }),
    refBackward: ({ x, mod }, { y }) => {
      const g = ref.layerNormModulateBackward(x, mod, y, B, T, D, SH, SC);
      return { x: g.dx, mod: g.dmod };
    },
    gpu: (k, t) => {
      t.stats = k.tensor([B * T * 2], "stats");
      return layerNormModulateForward(k, t.x, t.mod, SH, SC, t.y, t.stats);
    },
    gpuBackward: (k, t) => {
      // The kernel writes only the shift/scale columns; the reference's others are zero.
      k.fill(t.dmod, 0);
      return layerNormModulateBackward(k, t.x, t.mod, SH, SC, t.stats, t.dy, t.dx, t.dmod, {
        accumulate,
      });
    },
  });
}

// D > 256 (several strides per thread, > 64-column dmod groups, ragged) and D < 64.
Deno.test("layerNormModulate D=300", () => lnCase(2, 37, 300, false));
Deno.test("layerNormModulate D=20 accumulate", () => lnCase(3, 9, 20, true));
// Mixed precision: y written in f16, dy read in f16.
await testF16("layerNormModulate D=300 f16", () => lnCase(2, 37, 300, false, true));
await testF16("layerNormModulate D=20 accumulate f16", () => lnCase(3, 9, 20, true, true));
// More than 65535 workgroups of 8 rows: the 2D workgroup grid (~15 s on llvmpipe, so opt-in).
Deno.test({
  name: "layerNormModulate 2D grid (FLOWGPU_SLOW_TESTS=1)",
  ignore: !Deno.env.get("FLOWGPU_SLOW_TESTS"),
  fn: () => lnCase(4096, 129, 4, false), // 8 rows a workgroup: 66048 workgroups
});

Deno.test("layerNormModulate backward leaves other dmod chunks untouched", async () => {
  const k = await kernels();
  const [B, T, D, NC, SH, SC] = [2, 11, 70, 6, 3, 4];
  const rng = new Rng(TEST_SEED ^ 0x51ab);
  const x = rng.normals(B * T * D, 2), mod = rng.normals(B * NC * D, 0.5);
  const dy = rng.normals(B * T * D);
  const sentinel = Float32Array.from({ length: B * NC * D }, (_, i) => 1000 + i);
  const t = {
    x: k.tensor([B, T, D]),
    mod: k.tensor([B, NC * D]),
    y: k.tensor([B, T, D]),
    stats: k.tensor([B * T * 2]),
    dy: k.tensor([B, T, D]),
    dx: k.tensor([B, T, D]),
    dmod: k.tensor([B, NC * D]),
  };
  k.write(t.x, Float32Array.from(x));
  k.write(t.mod, Float32Array.from(mod));
  k.write(t.dy, Float32Array.from(dy));
  k.write(t.dmod, sentinel);
  await k.run([
    ...layerNormModulateForward(k, t.x, t.mod, SH, SC, t.y, t.stats),
    ...layerNormModulateBackward(k, t.x, t.mod, SH, SC, t.stats, t.dy, t.dx, t.dmod),
  ]);
  const got = await k.read(t.dmod);
  const want = ref.layerNormModulateBackward(x, mod, dy, B, T, D, SH, SC).dmod;
  const gotChunks: number[] = [], wantChunks: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const chunk = Math.floor((i % (NC * D)) / D);
    if (chunk === SH || chunk === SC) {
      gotChunks.push(got[i]);
      wantChunks.push(want[i]);
    } else if (got[i] !== sentinel[i]) {
      throw new Error(`dmod[${i}] (chunk ${chunk}) changed: ${got[i]} != ${sentinel[i]}`);
    }
  }
  assertClose("layerNormModulate dmod chunks", gotChunks, wantChunks);
  const rows = ref.rowStats(x, B * T, D);
  const stats = await k.read(t.stats);
  assertClose("layerNormModulate stats mean", stats.filter((_, i) => i % 2 === 0), rows.mean);
  assertClose("layerNormModulate stats rstd", stats.filter((_, i) => i % 2 === 1), rows.rstd);
});
