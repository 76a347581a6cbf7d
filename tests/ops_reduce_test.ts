import * as ref from "./reference/reduce.ts";
import { checkOp } from "./harness.ts";
import { sumSquaredDifferences, sumSquares } from "../src/ops/reduce.ts";

for (const shape of [[5, 37], [3, 200, 500]]) {
  Deno.test(`sumSquares ${shape.join("x")}`, () =>
    checkOp({
      name: `sumSquares ${shape.join("x")}`,
      inputs: { x: shape },
      outputs: { out: [1] },
      ref: ({ x }) => ({ out: ref.sumSquares(x) }),
      gpu: (k, t) => sumSquares(k, t.x, t.out),
    }));
}

Deno.test("sumSquaredDifferences 3x200x500, scale 1/n", () =>
  checkOp({
    name: "sumSquaredDifferences 3x200x500",
    inputs: { a: [3, 200, 500], b: [3, 200, 500] },
    outputs: { out: [1] },
    ref: ({ a, b }) => ({
      out: ref.sumSquares(a.map((v, i) => v - b[i])).map((s) => s / a.length),
    }),
    gpu: (k, t) => sumSquaredDifferences(k, t.a, t.b, t.out, 1 / t.a.length),
  }));
