/**
 * Nearest-neighbour upsampling by an integer factor (PyTorch nn.Upsample, mode "nearest") of
 * NHWC activations, forward and backward (shaders/upsample.wgsl).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import source from "../../shaders/upsample.wgsl" with { type: "text" };
import { groupsFor, shader } from "./common.ts";

const code = shader(source);

function check(name: string, x: Tensor, y: Tensor, f: number): number[] {
  if (!Number.isInteger(f) || f < 1) {
    throw new Error(`${name}: factor ${f} is not a positive integer`);
  }
  if (x.shape.length !== 4) throw new Error(`${name}: x must be NHWC [B,H,W,C], got [${x.shape}]`);
  const [B, H, W, C] = x.shape;
  const want = [B, H * f, W * f, C];
  if (y.shape.length !== 4 || y.shape.some((v, i) => v !== want[i])) {
    throw new Error(`${name}: y is [${y.shape}], expected [${want}]`);
  }
  return [H, W, C];
}

/** y [B, H·f, W·f, C] = nearest upsampling of x [B, H, W, C]. */
export function upsampleForward(k: Kernels, x: Tensor, y: Tensor, f = 2): Dispatch[] {
  const [H, W, C] = check("upsample", x, y, f);
  const n = y.length;
  return [k.dispatch(code, "upsample_fwd", [k.uniform([n, H, W, C, f]), x, y], groupsFor(n))];
}

/** dx [B, H, W, C] (written) from dy [B, H·f, W·f, C]. */
export function upsampleBackward(k: Kernels, dy: Tensor, dx: Tensor, f = 2): Dispatch[] {
  const [H, W, C] = check("upsample backward", dx, dy, f);
  const n = dx.length;
  return [k.dispatch(code, "upsample_bwd", [k.uniform([n, H, W, C, f]), dy, dx], groupsFor(n))];
}
