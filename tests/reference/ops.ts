/**
 * Float64 CPU reference of every op, forward and backward. Plain loops, written for clarity;
 * the GPU kernels are checked against these, and these against finite differences.
 */
export type F64 = Float64Array;

const GELU_C = Math.sqrt(2 / Math.PI);

export function silu(x: F64): F64 {
  return x.map((v) => v / (1 + Math.exp(-v)));
}
export function siluBackward(x: F64, dy: F64): F64 {
  return x.map((v, i) => {
    const s = 1 / (1 + Math.exp(-v));
    return dy[i] * s * (1 + v * (1 - s));
  });
}

export function gelu(x: F64): F64 {
  return x.map((v) => 0.5 * v * (1 + Math.tanh(GELU_C * (v + 0.044715 * v ** 3))));
}
export function geluBackward(x: F64, dy: F64): F64 {
  return x.map((v, i) => {
    const th = Math.tanh(GELU_C * (v + 0.044715 * v ** 3));
    const dth = (1 - th * th) * GELU_C * (1 + 3 * 0.044715 * v * v);
    return dy[i] * (0.5 * (1 + th) + 0.5 * v * dth);
  });
}

export function relu(x: F64): F64 {
  return x.map((v) => Math.max(v, 0));
}
export function reluBackward(x: F64, dy: F64): F64 {
  return x.map((v, i) => (v > 0 ? dy[i] : 0));
}
