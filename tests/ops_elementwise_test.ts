import * as ref from "./reference/ops.ts";
import { checkOp } from "./harness.ts";
import {
  geluBackward,
  geluForward,
  reluBackward,
  reluForward,
  siluBackward,
  siluForward,
} from "../src/ops/elementwise.ts";

const shape = [3, 37, 5];

Deno.test("silu", () =>
  checkOp({
    name: "silu",
    inputs: { x: shape },
    scale: { x: 3 },
    outputs: { y: shape },
    ref: ({ x }) => ({ y: ref.silu(x) }),
    refBackward: ({ x }, { y }) => ({ x: ref.siluBackward(x, y) }),
    gpu: (k, t) => siluForward(k, t.x, t.y),
    gpuBackward: (k, t) => siluBackward(k, t.x, t.dy, t.dx),
  }));

Deno.test("gelu", () =>
  checkOp({
    name: "gelu",
    inputs: { x: shape },
    scale: { x: 3 },
    outputs: { y: shape },
    ref: ({ x }) => ({ y: ref.gelu(x) }),
    refBackward: ({ x }, { y }) => ({ x: ref.geluBackward(x, y) }),
    gpu: (k, t) => geluForward(k, t.x, t.y),
    gpuBackward: (k, t) => geluBackward(k, t.x, t.dy, t.dx),
  }));

// Random normals almost never fall within the finite-difference step of the kink at 0
// (probability below 1e-4 per run).
Deno.test("relu", () =>
  checkOp({
    name: "relu",
    inputs: { x: shape },
    scale: { x: 3 },
    outputs: { y: shape },
    ref: ({ x }) => ({ y: ref.relu(x) }),
    refBackward: ({ x }, { y }) => ({ x: ref.reluBackward(x, y) }),
    gpu: (k, t) => reluForward(k, t.x, t.y),
    gpuBackward: (k, t) => reluBackward(k, t.x, t.dy, t.dx),
  }));
