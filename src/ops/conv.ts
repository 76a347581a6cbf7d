/**
 * 2D convolution (PyTorch Conv2d semantics, square kernel, zero padding) as im2col + the linear
 * GEMM family, forward and backward, over channels-last activations (see shaders/conv.wgsl).
 *
 *   x  [B, H, W, Cin] (NHWC; `layout: "nchw"` reads [B, Cin, H, W] instead, e.g. an image batch)
 *   w  [Cout, Cin, k, k] (PyTorch's layout, used as the GEMM's [Cout, Cin·k·k] operand)
 *   b  [Cout] or null
 *   y  [B, Ho, Wo, Cout], Ho = ⌊(H + 2·pad − k)/stride⌋ + 1
 *
 * A 1×1 stride-1 unpadded convolution of NHWC input is the GEMM alone (no column buffer). Other
 * shapes go through a column buffer `cols` [B·Ho·Wo, Cin·k·k] that the caller provides, so one
 * scratch can serve every layer: the backward recomputes it from x rather than keeping it.
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import source from "../../shaders/conv.wgsl" with { type: "text" };
import { groupsFor, shader } from "./common.ts";
import {
  linearBackwardInput,
  linearBackwardWeight,
  linearForward,
  type LinearOptions,
} from "./linear.ts";

const code = shader(source);

/** Kernel side, stride and zero padding of a square convolution. */
export interface ConvGeometry {
  kernel: number;
  stride: number;
  pad: number;
}

export interface ConvOptions {
  /** Layout of x (and dx): "nhwc" (default) or "nchw". */
  layout?: "nhwc" | "nchw";
  /** Options of the GEMMs (variant, splits), for tests and tuning. */
  gemm?: LinearOptions;
}

/** Output side of a convolution along one axis. */
export function convOut(n: number, g: ConvGeometry): number {
  return Math.floor((n + 2 * g.pad - g.kernel) / g.stride) + 1;
}

interface Dims {
  B: number;
  H: number;
  W: number;
  C: number;
  Ho: number;
  Wo: number;
  Cout: number;
}

function checkGeometry(name: string, g: ConvGeometry): void {
  const ok = (v: number, min: number) => Number.isInteger(v) && v >= min;
  if (!ok(g.kernel, 1) || !ok(g.stride, 1) || !ok(g.pad, 0) || g.pad >= g.kernel) {
    throw new Error(
      `${name}: kernel ${g.kernel}, stride ${g.stride}, pad ${g.pad} is not a valid convolution`,
    );
  }
}

/** [B, H, W, C] of an image tensor in `layout`. */
function imageDims(name: string, x: Tensor, layout: "nhwc" | "nchw"): number[] {
  if (x.shape.length !== 4) {
    throw new Error(`${name}: x must be 4D (${layout.toUpperCase()}), got [${x.shape}]`);
  }
  const [B, a, b, c] = x.shape;
  return layout === "nchw" ? [B, b, c, a] : [B, a, b, c];
}

function dims(
  name: string,
  x: Tensor,
  w: Tensor,
  y: Tensor,
  g: ConvGeometry,
  layout: "nhwc" | "nchw",
): Dims {
  checkGeometry(name, g);
  const [B, H, W, C] = imageDims(name, x, layout);
  const Ho = convOut(H, g), Wo = convOut(W, g);
  if (Ho < 1 || Wo < 1) throw new Error(`${name}: a ${H}×${W} input is smaller than the kernel`);
  if (
    w.shape.length !== 4 || w.shape[1] !== C || w.shape[2] !== g.kernel || w.shape[3] !== g.kernel
  ) {
    throw new Error(`${name}: w is [${w.shape}], expected [Cout, ${C}, ${g.kernel}, ${g.kernel}]`);
  }
  const Cout = w.shape[0];
  const want = [B, Ho, Wo, Cout];
  if (y.shape.length !== 4 || y.shape.some((d, i) => d !== want[i])) {
    throw new Error(`${name}: y is [${y.shape}], expected [${want}] (NHWC)`);
  }
  return { B, H, W, C, Ho, Wo, Cout };
}

/** The column buffer shape [B·Ho·Wo, Cin·k·k] of a convolution of x. */
export function colsShape(
  x: Tensor,
  g: ConvGeometry,
  layout: "nhwc" | "nchw" = "nhwc",
): [number, number] {
  const [B, H, W, C] = imageDims("conv", x, layout);
  return [B * convOut(H, g) * convOut(W, g), C * g.kernel * g.kernel];
}

/** True when the convolution needs no column buffer (1×1, stride 1, no padding, NHWC). */
export function isPointwise(g: ConvGeometry, layout: "nhwc" | "nchw" = "nhwc"): boolean {
  return g.kernel === 1 && g.stride === 1 && g.pad === 0 && layout === "nhwc";
}

const view = (t: Tensor, shape: number[]): Tensor => ({ ...t, shape });

function colsView(name: string, cols: Tensor | null, d: Dims, g: ConvGeometry): Tensor {
  const rows = d.B * d.Ho * d.Wo, P = d.C * g.kernel * g.kernel;
  if (!cols) throw new Error(`${name}: this convolution needs a column buffer of ${rows}×${P}`);
  if (cols.length < rows * P) {
    throw new Error(`${name}: column buffer of ${cols.length} elements, needs ${rows}×${P}`);
  }
  return { ...cols, length: rows * P, shape: [rows, P] };
}

function uniform(k: Kernels, n: number, d: Dims, g: ConvGeometry, nchw: boolean, acc: boolean) {
  return k.uniform([
    n,
    d.B,
    d.H,
    d.W,
    d.C,
    d.Ho,
    d.Wo,
    g.kernel,
    g.stride,
    g.pad,
    nchw ? 1 : 0,
    acc ? 1 : 0,
  ]);
}

function im2col(
  k: Kernels,
  x: Tensor,
  cols: Tensor,
  d: Dims,
  g: ConvGeometry,
  nchw: boolean,
): Dispatch {
  const n = cols.length;
  return k.dispatch(code, "im2col_fwd", [uniform(k, n, d, g, nchw, false), x, cols], groupsFor(n));
}

/**
 * y = conv2d(x, w) + b. `cols` is the column buffer (may be null for a pointwise convolution);
 * only its first B·Ho·Wo·Cin·k·k elements are used.
 */
export function conv2dForward(
  k: Kernels,
  x: Tensor,
  w: Tensor,
  b: Tensor | null,
  y: Tensor,
  cols: Tensor | null,
  g: ConvGeometry,
  opts: ConvOptions = {},
): Dispatch[] {
  const layout = opts.layout ?? "nhwc";
  const d = dims("conv2d", x, w, y, g, layout);
  const M = d.B * d.Ho * d.Wo, P = d.C * g.kernel * g.kernel;
  const w2 = view(w, [d.Cout, P]), y2 = view(y, [M, d.Cout]);
  if (isPointwise(g, layout)) return linearForward(k, view(x, [M, P]), w2, b, y2, opts.gemm);
  const c = colsView("conv2d", cols, d, g);
  return [im2col(k, x, c, d, g, layout === "nchw"), ...linearForward(k, c, w2, b, y2, opts.gemm)];
}

/**
 * Backward of conv2dForward given dy [B, Ho, Wo, Cout]: dw and db (written, or null to skip),
 * dx (written, added into with `accumulateDx`, or null when x is data). `cols` and `dcols` are
 * column-buffer scratch (null for a pointwise convolution): the backward recomputes im2col(x)
 * into `cols` for dw and forms dcols = dy·w before col2im.
 */
export function conv2dBackward(
  k: Kernels,
  x: Tensor,
  w: Tensor,
  dy: Tensor,
  dx: Tensor | null,
  dw: Tensor | null,
  db: Tensor | null,
  cols: Tensor | null,
  dcols: Tensor | null,
  g: ConvGeometry,
  opts: ConvOptions & { accumulateDx?: boolean } = {},
): Dispatch[] {
  const layout = opts.layout ?? "nhwc";
  const name = "conv2d backward";
  const d = dims(name, x, w, dy, g, layout);
  if (dx && (dx.length !== x.length || dx.shape.some((v, i) => v !== x.shape[i]))) {
    throw new Error(`${name}: dx is [${dx.shape}], x is [${x.shape}]`);
  }
  if (dw && dw.length !== w.length) throw new Error(`${name}: dw and w differ in size`);
  if (db && !dw) throw new Error(`${name}: db needs dw`);
  const M = d.B * d.Ho * d.Wo, P = d.C * g.kernel * g.kernel;
  const w2 = view(w, [d.Cout, P]), dy2 = view(dy, [M, d.Cout]);
  const acc = opts.accumulateDx ?? false;
  const out: Dispatch[] = [];
  if (isPointwise(g, layout)) {
    const x2 = view(x, [M, P]);
    if (dw) out.push(...linearBackwardWeight(k, dy2, x2, view(dw, [d.Cout, P]), db, opts.gemm));
    if (dx) {
      out.push(
        ...linearBackwardInput(k, dy2, w2, view(dx, [M, P]), { ...opts.gemm, accumulate: acc }),
      );
    }
    return out;
  }
  const nchw = layout === "nchw";
  if (dw) {
    const c = colsView(name, cols, d, g);
    out.push(im2col(k, x, c, d, g, nchw));
    out.push(...linearBackwardWeight(k, dy2, c, view(dw, [d.Cout, P]), db, opts.gemm));
  }
  if (dx) {
    const dc = colsView(name, dcols, d, g);
    out.push(...linearBackwardInput(k, dy2, w2, dc, opts.gemm));
    const u = uniform(k, dx.length, d, g, nchw, acc);
    out.push(k.dispatch(code, "col2im_bwd", [u, dc, dx], groupsFor(dx.length)));
  }
  return out;
}

/** y NHWC [B, H, W, C] from x NCHW [B, C, H, W]. Its backward is `toNchw`. */
export function toNhwc(k: Kernels, x: Tensor, y: Tensor): Dispatch[] {
  return permute(k, "to_nhwc", x, y, imageDims("toNhwc", x, "nchw"), "nhwc");
}

/** y NCHW [B, C, H, W] from x NHWC [B, H, W, C]. Its backward is `toNhwc`. */
export function toNchw(k: Kernels, x: Tensor, y: Tensor): Dispatch[] {
  return permute(k, "to_nchw", x, y, imageDims("toNchw", x, "nhwc"), "nchw");
}

function permute(
  k: Kernels,
  entry: string,
  x: Tensor,
  y: Tensor,
  [B, H, W, C]: number[],
  out: "nhwc" | "nchw",
): Dispatch[] {
  const want = out === "nhwc" ? [B, H, W, C] : [B, C, H, W];
  if (y.shape.length !== 4 || y.shape.some((v, i) => v !== want[i])) {
    throw new Error(`${entry}: y is [${y.shape}], expected [${want}]`);
  }
  const n = y.length;
  const u = k.uniform([n, B, H, W, C, 0, 0, 0, 0, 0, 0, 0]);
  return [k.dispatch(code, entry, [u, x, y], groupsFor(n))];
}
