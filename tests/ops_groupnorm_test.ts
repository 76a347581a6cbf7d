import * as ref from "./reference/groupnorm.ts";
import { checkOp } from "./harness.ts";
import { GN_EPS, groupNormBackward, groupNormForward } from "../src/ops/groupnorm.ts";

function gnCase(B: number, H: number, W: number, C: number, G: number, accumulate = false) {
  const s = { B, S: H * W, C, G, eps: GN_EPS };
  return checkOp({
    name: `groupNorm B${B} ${H}x${W} C${C} G${G}${accumulate ? " accumulate" : ""}`,
    inputs: { x: [B, H, W, C], gamma: [C], beta: [C] },
    scale: { x: 3 },
    outputs: { y: [B, H, W, C] },
    accumulate: accumulate ? ["x"] : [],
    ref: ({ x, gamma, beta }) => ({ y: ref.groupNorm(x, gamma, beta, s) }),
    refBackward: ({ x, gamma }, { y }) => {
      const g = ref.groupNormBackward(x, gamma, y, s);
      return { x: g.dx, gamma: g.dgamma, beta: g.dbeta };
    },
    gpu: (k, t) => {
      t.stats = k.tensor([B * G * 2], "stats");
      return groupNormForward(k, t.x, t.gamma, t.beta, t.y, t.stats, G);
    },
    gpuBackward: (k, t) =>
      groupNormBackward(k, t.x, t.gamma, t.stats, t.dy, t.dx, t.dgamma, t.dbeta, G, {
        accumulate,
      }),
  });
}

// Ragged: odd sides, channels per group 1, 3 and 5, batch 1; a group larger than a workgroup
// (several strides per thread) and more rows than one parameter chunk.
Deno.test("groupNorm ragged", () => gnCase(2, 3, 5, 6, 2));
Deno.test("groupNorm batch 1, one channel per group", () => gnCase(1, 5, 3, 7, 7));
Deno.test("groupNorm one group, accumulate", () => gnCase(3, 3, 3, 5, 1, true));
Deno.test("groupNorm large groups", () => gnCase(2, 17, 19, 10, 2));
