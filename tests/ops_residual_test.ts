import * as ref from "./reference/residual.ts";
import { assertClose, checkOp, kernels, testF16, U16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { gateResidualBackward, gateResidualForward } from "../src/ops/residual.ts";

function gateCase(B: number, T: number, D: number, G: number, f16 = false) {
  return checkOp({
    name: `gateResidual B${B} T${T} D${D} chunk ${G}${f16 ? " f16 y, dy" : ""}`,
    // f16: y is f16 for the reference too (out and dmod keep f32's bound); dy is rounded once
    // from its f32 value (relative error ≤ u = 2^-11 on top of f32's 1e-4).
    f16: f16 ? ["y", "dy"] : [],
    tol: f16 ? U16 + 1e-4 : undefined,
    inputs: { x: [B, T, D], y: [B, T, D], mod: [B, 6 * D] },
    scale: { mod: 0.5 },
    outputs: { out: [B, T, D] },
    ref: ({ x, y, mod }) => ({ out: ref.gateResidual(x, y, mod, B, T, D, G) }),
    // dx = dout is no kernel's output, so only dy and dmod are checked.
    refBackward: ({ y, mod }, { out }) => {
      const g = ref.gateResidualBackward(y, mod, out, B, T, D, G);
      return { y: g.dy, mod: g.dmod };
    },
    gpu: (k, t) => gateResidualForward(k, t.x, t.y, t.mod, G, t.out),
    gpuBackward: (k, t) => {
      // The kernel writes only the gate columns; the reference's others are zero.
      k.fill(t.dmod, 0);
      return gateResidualBackward(k, t.y, t.mod, G, t.dout, t.dy, t.dmod);
    },
  });
}

Deno.test("gateResidual D=150", () => gateCase(2, 37, 150, 2));
Deno.test("gateResidual D=12", () => gateCase(3, 5, 12, 5));

// Mixed precision: the saved branch output y and the branch gradient dy in f16.
await testF16("gateResidual D=150 f16", () => gateCase(2, 37, 150, 2, true));
await testF16("gateResidual D=12 f16", () => gateCase(3, 5, 12, 5, true));

Deno.test("gateResidual backward leaves other dmod chunks untouched", async () => {
  const k = await kernels();
  const [B, T, D, NC, G] = [2, 11, 70, 6, 5];
  const rng = new Rng(TEST_SEED ^ 0x9a7e);
  const y = rng.normals(B * T * D), mod = rng.normals(B * NC * D, 0.5);
  const dout = rng.normals(B * T * D);
  const sentinel = Float32Array.from({ length: B * NC * D }, (_, i) => 1000 + i);
  const t = {
    y: k.tensor([B, T, D]),
    mod: k.tensor([B, NC * D]),
    dout: k.tensor([B, T, D]),
    dy: k.tensor([B, T, D]),
    dmod: k.tensor([B, NC * D]),
  };
  k.write(t.y, Float32Array.from(y));
  k.write(t.mod, Float32Array.from(mod));
  k.write(t.dout, Float32Array.from(dout));
  k.write(t.dmod, sentinel);
  await k.run(gateResidualBackward(k, t.y, t.mod, G, t.dout, t.dy, t.dmod));
  const got = await k.read(t.dmod);
  const want = ref.gateResidualBackward(y, mod, dout, B, T, D, G).dmod;
  const gotChunk: number[] = [], wantChunk: number[] = [];
  for (let i = 0; i < got.length; i++) {
    const chunk = Math.floor((i % (NC * D)) / D);
    if (chunk === G) {
      gotChunk.push(got[i]);
      wantChunk.push(want[i]);
    } else if (got[i] !== sentinel[i]) {
      throw new Error(`dmod[${i}] (chunk ${chunk}) changed: ${got[i]} != ${sentinel[i]}`);
    }
  }
  assertClose("gateResidual dmod gate chunk", gotChunk, wantChunk);
});
