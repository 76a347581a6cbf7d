import * as ref from "./reference/conv.ts";
import { checkOp } from "./harness.ts";
import {
  colsShape,
  conv2dBackward,
  conv2dForward,
  type ConvGeometry,
  isPointwise,
  toNchw,
  toNhwc,
} from "../src/ops/conv.ts";
import type { LinearOptions } from "../src/ops/linear.ts";
import type { Kernels, Tensor } from "../src/gpu/kernels.ts";

interface Case extends ref.ConvShape {
  gemm?: LinearOptions;
  accumulate?: boolean;
  bias?: boolean;
}

function convCase(c: Case) {
  const g: ConvGeometry = { kernel: c.k, stride: c.s, pad: c.pad };
  const Ho = ref.outSize(c.H, c.k, c.s, c.pad), Wo = ref.outSize(c.W, c.k, c.s, c.pad);
  const layout = c.nchw ? "nchw" : "nhwc";
  const xShape = c.nchw ? [c.B, c.Cin, c.H, c.W] : [c.B, c.H, c.W, c.Cin];
  const bias = c.bias ?? true;
  const tag = `conv ${c.k}x${c.k} s${c.s} p${c.pad} B${c.B} ${c.H}x${c.W} ${c.Cin}->${c.Cout}` +
    (c.nchw ? " nchw" : "") + (c.gemm ? ` gemm ${JSON.stringify(c.gemm)}` : "") +
    (c.accumulate ? " accumulate" : "") + (bias ? "" : " no-bias");
  const scratch = (k: Kernels, x: Tensor) =>
    isPointwise(g, layout) ? null : k.tensor(colsShape(x, g, layout), "cols");
  return checkOp({
    name: tag,
    inputs: bias
      ? { x: xShape, w: [c.Cout, c.Cin, c.k, c.k], b: [c.Cout] }
      : { x: xShape, w: [c.Cout, c.Cin, c.k, c.k] },
    outputs: { y: [c.B, Ho, Wo, c.Cout] },
    accumulate: c.accumulate ? ["x"] : [],
    ref: ({ x, w, b }) => ({ y: ref.conv2d(x, w, b ?? null, c) }),
    refBackward: ({ x, w }, { y }): Record<string, Float64Array> => {
      const r = ref.conv2dBackward(x, w, y, c);
      return bias ? { x: r.dx, w: r.dw, b: r.db } : { x: r.dx, w: r.dw };
    },
    gpu: (k, t) =>
      conv2dForward(k, t.x, t.w, bias ? t.b : null, t.y, scratch(k, t.x), g, {
        layout,
        gemm: c.gemm,
      }),
    gpuBackward: (k, t) =>
      conv2dBackward(
        k,
        t.x,
        t.w,
        t.dy,
        t.dx,
        t.dw,
        bias ? t.db : null,
        scratch(k, t.x),
        scratch(k, t.x),
        g,
        { layout, gemm: c.gemm, accumulateDx: c.accumulate },
      ),
  });
}

// The VQ-VAE's three shapes on ragged sizes (odd sides, channels not multiples of 4, batch 1),
// the image-side NCHW layout, and the GEMM variants forced (vec4 widths and scalar fallbacks).
const k3 = { k: 3, s: 1, pad: 1 }, k4 = { k: 4, s: 2, pad: 1 }, k1 = { k: 1, s: 1, pad: 0 };
Deno.test("conv 3x3 s1 p1 ragged", () => convCase({ B: 2, H: 5, W: 7, Cin: 3, Cout: 5, ...k3 }));
Deno.test("conv 3x3 batch 1, several GEMM tiles", () =>
  convCase({ B: 1, H: 9, W: 11, Cin: 6, Cout: 9, ...k3 }));
Deno.test("conv 4x4 s2 p1 odd side", () => convCase({ B: 1, H: 7, W: 9, Cin: 5, Cout: 6, ...k4 }));
Deno.test("conv 4x4 s2 p1 even side, accumulate dx", () =>
  convCase({ B: 2, H: 8, W: 6, Cin: 3, Cout: 4, ...k4, accumulate: true }));
Deno.test("conv 1x1 (pointwise GEMM)", () =>
  convCase({ B: 3, H: 3, W: 5, Cin: 6, Cout: 7, ...k1 }));
Deno.test("conv 1x1 accumulate dx, no bias", () =>
  convCase({ B: 1, H: 5, W: 3, Cin: 4, Cout: 3, ...k1, accumulate: true, bias: false }));
Deno.test("conv 3x3 NCHW input", () =>
  convCase({ B: 2, H: 6, W: 5, Cin: 3, Cout: 4, ...k3, nchw: true }));
Deno.test("conv 4x4 s2 NCHW input, accumulate dx", () =>
  convCase({ B: 1, H: 9, W: 8, Cin: 1, Cout: 5, ...k4, nchw: true, accumulate: true }));
Deno.test("conv 1x1 NCHW input (through im2col)", () =>
  convCase({ B: 2, H: 3, W: 4, Cin: 3, Cout: 2, ...k1, nchw: true }));
Deno.test("conv 3x3 GEMM scalar", () =>
  convCase({ B: 1, H: 7, W: 5, Cin: 4, Cout: 8, ...k3, gemm: { variant: "scalar" } }));
Deno.test("conv 3x3 GEMM mid (vec4 widths)", () =>
  convCase({ B: 2, H: 6, W: 6, Cin: 4, Cout: 8, ...k3, gemm: { variant: "mid" } }));
Deno.test("conv 4x4 GEMM small split-K", () =>
  convCase({ B: 2, H: 7, W: 7, Cin: 5, Cout: 3, ...k4, gemm: { variant: "small", splits: 3 } }));
Deno.test("conv 4x4 GEMM splitk", () =>
  convCase({ B: 3, H: 8, W: 8, Cin: 4, Cout: 8, ...k4, gemm: { variant: "splitk", splits: 2 } }));
// Other geometries the op accepts: a 5x5 kernel with pad 2, stride 3 with pad 0.
Deno.test("conv 5x5 p2", () => convCase({ B: 1, H: 6, W: 7, Cin: 2, Cout: 3, k: 5, s: 1, pad: 2 }));
Deno.test("conv 3x3 s3 p0", () =>
  convCase({ B: 2, H: 10, W: 8, Cin: 3, Cout: 2, k: 3, s: 3, pad: 0 }));

Deno.test("layout permutes NCHW <-> NHWC", async () => {
  const [B, C, H, W] = [2, 3, 5, 7];
  await checkOp({
    name: "toNhwc",
    inputs: { x: [B, C, H, W] },
    outputs: { y: [B, H, W, C] },
    ref: ({ x }) => ({ y: ref.toNhwc(x, B, C, H, W) }),
    refBackward: (_, { y }) => ({ x: ref.toNchw(y, B, H, W, C) }),
    gpu: (k, t) => toNhwc(k, t.x, t.y),
    gpuBackward: (k, t) => toNchw(k, t.dy, t.dx),
  });
  await checkOp({
    name: "toNchw",
    inputs: { x: [B, H, W, C] },
    outputs: { y: [B, C, H, W] },
    ref: ({ x }) => ({ y: ref.toNchw(x, B, H, W, C) }),
    refBackward: (_, { y }) => ({ x: ref.toNhwc(y, B, C, H, W) }),
    gpu: (k, t) => toNchw(k, t.x, t.y),
    gpuBackward: (k, t) => toNhwc(k, t.dy, t.dx),
  });
});
