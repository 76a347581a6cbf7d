import * as cref from "./reference/conv.ts";
import { checkOp } from "./harness.ts";
import { upsampleBackward, upsampleForward } from "../src/ops/upsample.ts";

function upCase(B: number, H: number, W: number, C: number, f: number) {
  return checkOp({
    name: `upsample x${f} B${B} ${H}x${W} C${C}`,
    inputs: { x: [B, H, W, C] },
    outputs: { y: [B, H * f, W * f, C] },
    ref: ({ x }) => ({ y: cref.upsample(x, B, H, W, C, f) }),
    refBackward: (_, { y }) => ({ x: cref.upsampleBackward(y, B, H, W, C, f) }),
    gpu: (k, t) => upsampleForward(k, t.x, t.y, f),
    gpuBackward: (k, t) => upsampleBackward(k, t.dy, t.dx, f),
  });
}

Deno.test("upsample nearest x2 ragged", () => upCase(2, 3, 5, 3, 2));
Deno.test("upsample nearest x3 batch 1", () => upCase(1, 4, 2, 5, 3));
