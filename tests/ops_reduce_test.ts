import * as ref from "./reference/reduce.ts";
import { assertClose, checkOp, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { columnSum, sumSquares } from "../src/ops/reduce.ts";

// Direct (M ≤ 64), two-stage with a ragged last chunk (1000 = 31·32 + 8), and M = 32768.
const cases = [[13, 37], [1000, 37], [32768, 5], [300, 300]];

for (const [M, N] of cases) {
  for (const accumulate of [false, true]) {
    const name = `columnSum ${M}x${N}${accumulate ? " (accumulate)" : ""}`;
    Deno.test(name, async () => {
      const k = await kernels();
      const rng = new Rng(TEST_SEED ^ (M * 7919 + N * 31 + (accumulate ? 1 : 0)));
      const x = rng.normals(M * N), init = rng.normals(N);
      const tx = k.tensor([M, N]), to = k.tensor([N]);
      k.write(tx, Float32Array.from(x));
      if (accumulate) k.write(to, Float32Array.from(init));
      else k.fill(to, NaN);
      const ds = columnSum(k, tx, to, { accumulate });
      await k.run(ds);
      const want = ref.columnSum(x, M, N).map((v, i) => accumulate ? v + init[i] : v);
      const got = await k.read(to);
      const e = assertClose(name, got, want);
      // Deterministic: replaying the same dispatches gives the same bits.
      if (accumulate) k.write(to, Float32Array.from(init));
      await k.run(ds);
      const again = await k.read(to);
      if (!again.every((v, i) => Object.is(v, got[i]))) {
        throw new Error(`${name}: not deterministic`);
      }
      console.log(`  ${name}: relative error ${e.toExponential(2)} (${ds.length} stages)`);
    });
  }
}

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
