import * as ref from "./reference/xent.ts";
import { checkOp } from "./harness.ts";
import { xentBackward, xentForward } from "../src/ops/xent.ts";

// 7 rows of 10 classes; 300 rows (beyond one 256-thread workgroup) of 13, logits scaled so
// softmax is peaked and the max subtraction matters.
for (const [B, C, scale] of [[7, 10, 2], [300, 13, 8]]) {
  Deno.test(`xent ${B}x${C}`, () =>
    checkOp({
      name: `xent ${B}x${C}`,
      inputs: { logits: [B, C] },
      scale: { logits: scale },
      ints: { labels: { shape: [B], max: C } },
      outputs: { loss: [1] },
      ref: ({ logits, labels }) => ({ loss: ref.xent(logits, labels) }),
      refBackward: ({ logits, labels }, { loss }) => ({
        logits: ref.xentBackward(logits, labels, loss[0]),
      }),
      gpu: (k, t) => xentForward(k, t.logits, t.labels, t.loss),
      gpuBackward: (k, t) => xentBackward(k, t.logits, t.labels, t.dloss, t.dlogits),
    }));
}
