import * as ref from "./reference/attention.ts";
import { checkOp, kernels } from "./harness.ts";
import {
  attentionAuxShape,
  attentionBackward,
  attentionForward,
  type AttentionOptions,
} from "../src/ops/attention.ts";

function attnCase(B: number, T: number, heads: number, dh: number, opts: AttentionOptions = {}) {
  const D = heads * dh;
  const blocks = opts.blockRows ? ` blocks ${opts.blockRows}/${opts.tileRows}` : "";
  return checkOp({
    name: `attention B${B} T${T} heads${heads} dh${dh}${blocks}`,
    inputs: { qkv: [B, T, 3 * D] },
    scale: { qkv: 1.5 },
    outputs: { out: [B, T, D] },
    ref: ({ qkv }) => ({ out: ref.attention(qkv, B, T, D, heads) }),
    refBackward: ({ qkv }, { out }) => ({
      qkv: ref.attentionBackward(qkv, out, B, T, D, heads),
    }),
    gpu: (k, t) => {
      t.aux = k.tensor(attentionAuxShape(B, T, D, heads), "aux");
      k.fill(t.aux, NaN);
      return attentionForward(k, t.qkv, t.out, t.aux, heads, opts);
    },
    gpuBackward: (k, t) => attentionBackward(k, t.qkv, t.out, t.aux, t.dout, t.dqkv, heads, opts),
  });
}

// Ragged T spanning several row blocks and key tiles; odd head counts; dh 4..16. Small tiles
// also keep llvmpipe's compile time down (it grows with the key-tile size).
Deno.test("attention T=9 dh=4", () => attnCase(2, 9, 3, 4));
Deno.test("attention T=37 dh=8 small blocks", () =>
  attnCase(1, 37, 3, 8, { blockRows: 16, tileRows: 8 }));
Deno.test("attention T=37 dh=12 blocks 8/5", () =>
  attnCase(2, 37, 1, 12, { blockRows: 8, tileRows: 5 }));
Deno.test("attention T=20 dh=16 blocks 16/8", () =>
  attnCase(1, 20, 2, 16, { blockRows: 16, tileRows: 8 }));
Deno.test("attention T=70 dh=4 default blocks", () => attnCase(1, 70, 1, 4));
// The tiny preset's real head size with the default blocks (several key tiles): the unrolled
// dh=64 code takes llvmpipe ~90 s to compile on a cold shader cache, so it is opt-in.
Deno.test({
  name: "attention T=49 dh=64 (FLOWGPU_SLOW_TESTS=1)",
  ignore: !Deno.env.get("FLOWGPU_SLOW_TESTS"),
  fn: () => attnCase(1, 49, 2, 64),
});

Deno.test("attention rejects dh not a multiple of 4", async () => {
  const k = await kernels();
  const qkv = k.tensor([1, 4, 18]), out = k.tensor([1, 4, 6]);
  const aux = k.tensor(attentionAuxShape(1, 4, 6, 1));
  let msg = "";
  try {
    attentionForward(k, qkv, out, aux, 1);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("multiple of 4")) throw new Error(`expected a dh error, got "${msg}"`);
});
