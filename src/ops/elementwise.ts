/** Pointwise activations (SiLU, GELU-tanh, ReLU), forward and backward. */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import source from "../../shaders/elementwise.wgsl" with { type: "text" };

const code = shader(source);

/** One thread per element: bindings (uniform n, ...reads, write). */
function pointwise(k: Kernels, entry: string, ts: Tensor[]): Dispatch[] {
  const n = sameLength(entry, ...ts);
  return [k.dispatch(code, entry, [k.uniform([n]), ...ts], groupsFor(n))];
}

/** y = x·sigmoid(x). */
export function siluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch[] {
  return pointwise(k, "silu_fwd", [x, y]);
}

/** dx = dy·silu'(x). */
export function siluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch[] {
  return pointwise(k, "silu_bwd", [x, dy, dx]);
}

/** y = GELU(x), tanh approximation (PyTorch `approximate="tanh"`). */
export function geluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch[] {
  return pointwise(k, "gelu_fwd", [x, y]);
}

/** dx = dy·GELU'(x). */
export function geluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch[] {
  return pointwise(k, "gelu_bwd", [x, dy, dx]);
}

/** y = max(x, 0). */
export function reluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch[] {
  return pointwise(k, "relu_fwd", [x, y]);
}

/** dx = dy where x > 0, else 0 (PyTorch's convention at 0). */
export function reluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch[] {
  return pointwise(k, "relu_bwd", [x, dy, dx]);
}
