import * as ref from "./reference/loss.ts";
import { checkOp } from "./harness.ts";
import { flowTargetForward, mseBackward, mseForward } from "../src/ops/loss.ts";
import { reductionPlan } from "../src/ops/reduce.ts";
import { interpolate } from "../src/flow/path.ts";

// Small (3 partial sums of 256) and large enough for chunks of 512 over 733 partial sums.
for (const shape of [[3, 5, 7, 9], [2, 3, 250, 250]]) {
  Deno.test(`mse ${shape.join("x")}`, () =>
    checkOp({
      name: `mse ${shape.join("x")}`,
      inputs: { pred: shape, target: shape },
      outputs: { loss: [1] },
      ref: ({ pred, target }) => ({ loss: ref.mse(pred, target) }),
      refBackward: ({ pred, target }, { loss }) => ({
        pred: ref.mseBackward(pred, target, loss[0]),
      }),
      gpu: (k, t) => mseForward(k, t.pred, t.target, t.loss),
      gpuBackward: (k, t) => mseBackward(k, t.pred, t.target, t.dpred, 1, t.dloss),
    }));
}

Deno.test("mse backward with a constant upstream scale", () =>
  checkOp({
    name: "mse scale 3",
    inputs: { pred: [3, 37], target: [3, 37] },
    outputs: { loss: [1] },
    ref: ({ pred, target }) => ({ loss: ref.mse(pred, target) }),
    // The upstream gradient is the constant 3, not dloss: no finite-difference check.
    refBackward: ({ pred, target }) => ({ pred: ref.mseBackward(pred, target, 3) }),
    skipFiniteDiff: true,
    gpu: (k, t) => mseForward(k, t.pred, t.target, t.loss),
    gpuBackward: (k, t) => mseBackward(k, t.pred, t.target, t.dpred, 3),
  }));

// Micro-batches: each adds its share scale·mean into the loss; two halves make the batch's mean.
Deno.test("mse accumulated over two micro-batches equals the batch's mean", () =>
  checkOp({
    name: "mse over two halves",
    inputs: { pred: [2, 3, 301], target: [2, 3, 301] },
    outputs: { loss: [1] },
    ref: ({ pred, target }) => ({ loss: ref.mse(pred, target) }),
    gpu: (k, t) => {
      const half = (x: typeof t.pred, i: number) => {
        const h = k.tensor([3, 301], `half ${i}`);
        const enc = k.device.createCommandEncoder();
        enc.copyBufferToBuffer(x.buffer, i * 3 * 301 * 4, h.buffer, 0, 3 * 301 * 4);
        k.device.queue.submit([enc.finish()]);
        return h;
      };
      return [0, 1].flatMap((i) =>
        mseForward(k, half(t.pred, i), half(t.target, i), t.loss, {
          scale: 0.5,
          accumulate: i > 0,
        })
      );
    },
  }));

Deno.test("reduction plan", () => {
  const ok = (n: number, chunk: number, parts: number) => {
    const p = reductionPlan(n);
    if (p.chunk !== chunk || p.parts !== parts) {
      throw new Error(`plan(${n}) = ${JSON.stringify(p)}`);
    }
  };
  ok(1, 256, 1);
  ok(375000, 512, 733);
  const big = reductionPlan(130e6);
  if (!(big.parts <= 1024 && big.chunk * big.parts >= 130e6)) throw new Error("plan(130e6)");
});

Deno.test("flow target", () =>
  checkOp({
    name: "flow target",
    inputs: { x1: [3, 2, 5, 7], x0: [3, 2, 5, 7], t: [3] },
    outputs: { xt: [3, 2, 5, 7], target: [3, 2, 5, 7] },
    ref: ({ x1, x0, t }) => ref.flowTarget(x1, x0, t),
    gpu: (k, t) => flowTargetForward(k, t.x1, t.x0, t.t, t.xt, t.target),
  }));

// The kernel computes what the flow module names: src/flow/path.ts `interpolate`.
Deno.test("flow target = flow/path.ts interpolate", () =>
  checkOp({
    name: "flow target vs interpolate",
    inputs: { x1: [4, 3, 6], x0: [4, 3, 6], t: [4] },
    outputs: { xt: [4, 3, 6], target: [4, 3, 6] },
    ref: ({ x1, x0, t }) => {
      const { xt, v } = interpolate(
        Float32Array.from(x0),
        Float32Array.from(x1),
        Float32Array.from(t),
      );
      return { xt: Float64Array.from(xt), target: Float64Array.from(v) };
    },
    gpu: (k, t) => flowTargetForward(k, t.x1, t.x0, t.t, t.xt, t.target),
  }));
