import * as ref from "./reference/patch.ts";
import { assertClose, checkOp, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import {
  addPosEmbedForward,
  im2colBackward,
  im2colForward,
  unpatchifyBackward,
  unpatchifyForward,
} from "../src/ops/patch.ts";

// Ragged: a 6x10 image of 2x2 patches (3x5 tokens), and 3x3 patches of a 9x6 image.
const cases = [
  { B: 2, C: 3, H: 6, W: 10, p: 2 },
  { B: 3, C: 4, H: 9, W: 6, p: 3 },
];

for (const { B, C, H, W, p } of cases) {
  const T = (H / p) * (W / p), P = C * p * p;
  const tag = `B${B} C${C} ${H}x${W} p${p}`;

  Deno.test(`im2col ${tag}`, () =>
    checkOp({
      name: `im2col ${tag}`,
      inputs: { img: [B, C, H, W] },
      outputs: { cols: [B * T, P] },
      ref: ({ img }) => ({ cols: ref.im2col(img, B, C, H, W, p) }),
      refBackward: (_, { cols }) => ({ img: ref.im2colBackward(cols, B, C, H, W, p) }),
      gpu: (k, t) => im2colForward(k, t.img, t.cols, p),
      gpuBackward: (k, t) => im2colBackward(k, t.dcols, t.dimg, p),
    }));

  Deno.test(`unpatchify ${tag}`, () =>
    checkOp({
      name: `unpatchify ${tag}`,
      inputs: { o: [B * T, P] },
      outputs: { img: [B, C, H, W] },
      ref: ({ o }) => ({ img: ref.unpatchify(o, B, C, H, W, p) }),
      refBackward: (_, { img }) => ({ o: ref.unpatchifyBackward(img, B, C, H, W, p) }),
      gpu: (k, t) => unpatchifyForward(k, t.o, t.img, p, C),
      gpuBackward: (k, t) => unpatchifyBackward(k, t.dimg, t.do),
    }));
}

Deno.test("im2col · Wᵀ equals the stride-p Conv2d", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x1234);
  const B = 2, C = 3, H = 6, W = 10, p = 2, D = 5;
  const T = (H / p) * (W / p), P = C * p * p;
  const img = rng.normals(B * C * H * W), weight = rng.normals(D * P);
  const ti = k.tensor([B, C, H, W]), tc = k.tensor([B * T, P]);
  k.write(ti, Float32Array.from(img));
  k.fill(tc, NaN);
  await k.run(im2colForward(k, ti, tc, p));
  const cols = await k.read(tc);
  const got = new Float64Array(B * T * D);
  for (let r = 0; r < B * T; r++) {
    for (let d = 0; d < D; d++) {
      let s = 0;
      for (let j = 0; j < P; j++) s += cols[r * P + j] * weight[d * P + j];
      got[r * D + d] = s;
    }
  }
  assertClose("im2col conv", got, ref.patchConv(img, weight, B, C, H, W, p, D), 1e-6);
});

Deno.test("addPosEmbed (in place, broadcast over B)", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0x5678);
  const B = 3, T = 15, D = 37;
  const h = rng.normals(B * T * D), pos = rng.normals(T * D);
  const th = k.tensor([B * T, D]), tp = k.tensor([T, D]);
  k.write(th, Float32Array.from(h));
  k.write(tp, Float32Array.from(pos));
  await k.run(addPosEmbedForward(k, th, tp));
  const e = assertClose("addPosEmbed", await k.read(th), ref.addPosEmbed(h, pos));
  console.log(`  addPosEmbed: relative error ${e.toExponential(2)}`);
});
