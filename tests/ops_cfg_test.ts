import { checkOp } from "./harness.ts";
import { cfgCombineForward } from "../src/ops/cfg.ts";

for (const scale of [1, 3.5]) {
  Deno.test(`cfg combine, scale ${scale}`, () =>
    checkOp({
      name: `cfg s=${scale}`,
      inputs: { v: [2, 3, 5, 7] },
      outputs: { out: [1, 3, 5, 7] },
      ref: ({ v }) => {
        const n = v.length / 2;
        return { out: v.slice(0, n).map((vc, i) => v[i + n] + scale * (vc - v[i + n])) };
      },
      gpu: (k, t) => [cfgCombineForward(k, t.v, t.out, scale)],
    }));
}
