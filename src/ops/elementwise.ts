/** Pointwise activations (SiLU, GELU-tanh, ReLU), forward and backward. */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import code from "../../shaders/elementwise.wgsl" with { type: "text" };

function check(name: string, ...ts: Tensor[]): number {
  const n = ts[0].length;
  for (const t of ts) if (t.length !== n) throw new Error(`${name}: tensor lengths differ`);
  return n;
}

/** y = x·sigmoid(x). */
export function siluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch {
  const n = check("silu", x, y);
  return k.dispatch(code, "silu_fwd", [x, y, k.uniform([n])], Math.ceil(n / 256));
}

/** dx = dy·silu'(x). */
export function siluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch {
  const n = check("silu", x, dy, dx);
  return k.dispatch(code, "silu_bwd", [x, dx, k.uniform([n]), dy], Math.ceil(n / 256));
}

/** y = GELU(x), tanh approximation (PyTorch `approximate="tanh"`). */
export function geluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch {
  const n = check("gelu", x, y);
  return k.dispatch(code, "gelu_fwd", [x, y, k.uniform([n])], Math.ceil(n / 256));
}

/** dx = dy·GELU'(x). */
export function geluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch {
  const n = check("gelu", x, dy, dx);
  return k.dispatch(code, "gelu_bwd", [x, dx, k.uniform([n]), dy], Math.ceil(n / 256));
}

/** y = max(x, 0). */
export function reluForward(k: Kernels, x: Tensor, y: Tensor): Dispatch {
  const n = check("relu", x, y);
  return k.dispatch(code, "relu_fwd", [x, y, k.uniform([n])], Math.ceil(n / 256));
}

/** dx = dy where x > 0, else 0. */
export function reluBackward(k: Kernels, x: Tensor, dy: Tensor, dx: Tensor): Dispatch {
  const n = check("relu", x, dy, dx);
  return k.dispatch(code, "relu_bwd", [x, dx, k.uniform([n]), dy], Math.ceil(n / 256));
}
