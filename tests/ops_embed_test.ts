import * as ref from "./reference/embed.ts";
import { checkOp } from "./harness.ts";
import {
  addForward,
  labelEmbedBackward,
  labelEmbedForward,
  timestepEmbeddingForward,
} from "../src/ops/embed.ts";

const B = 7;
// tScale 1000 (t in ~[-1.5, 1.5]) reaches phases of ~1.5e3 rad. t is data (no backward).
for (const tScale of [1, 100, 1000]) {
  Deno.test(`timestep embedding tScale ${tScale}`, () =>
    checkOp({
      name: `timestep embedding tScale ${tScale}`,
      inputs: { t: [B] },
      scale: { t: 0.5 },
      outputs: { out: [B, 256] },
      ref: ({ t }) => ({ out: ref.timestepEmbedding(t, tScale) }),
      gpu: (k, t) => timestepEmbeddingForward(k, t.t, t.out, tScale),
    }));
}

// 11 rows (10 classes + the null class), 23 samples with labels < 9: rows 9 and 10 get none.
const R = 11, D = 37, NB = 23;
for (const accumulate of [false, true]) {
  Deno.test(`label embed${accumulate ? " (accumulate)" : ""}`, () =>
    checkOp({
      name: `label embed${accumulate ? " (accumulate)" : ""}`,
      inputs: { table: [R, D] },
      ints: { labels: { shape: [NB], max: R - 2 } },
      outputs: { out: [NB, D] },
      ref: ({ table, labels }) => ({ out: ref.labelEmbed(table, labels, D) }),
      refBackward: ({ labels }, { out }) => ({
        table: ref.labelEmbedBackward(labels, out, R, D),
      }),
      gpu: (k, t) => labelEmbedForward(k, t.table, t.labels, t.out),
      gpuBackward: (k, t) => labelEmbedBackward(k, t.labels, t.dout, t.dtable, { accumulate }),
      accumulate: accumulate ? ["table"] : [],
    }));
}

Deno.test("add", () =>
  checkOp({
    name: "add",
    inputs: { a: [5, 37], b: [5, 37] },
    outputs: { out: [5, 37] },
    ref: ({ a, b }) => ({ out: ref.add(a, b) }),
    gpu: (k, t) => addForward(k, t.a, t.b, t.out),
  }));
