/** Float64 reference of the loss family: MSE and the flow-matching interpolant/target. */
export type F64 = Float64Array;

/** [mean((pred − target)²)]. */
export function mse(pred: F64, target: F64): F64 {
  let s = 0;
  for (let i = 0; i < pred.length; i++) s += (pred[i] - target[i]) ** 2;
  return Float64Array.of(s / pred.length);
}

/** dpred = dloss·2(pred − target)/N. */
export function mseBackward(pred: F64, target: F64, dloss: number): F64 {
  return pred.map((p, i) => dloss * 2 * (p - target[i]) / pred.length);
}

/** xt = (1 − t[b])·x0 + t[b]·x1, target = x1 − x0. */
export function flowTarget(x1: F64, x0: F64, t: F64): { xt: F64; target: F64 } {
  const per = x1.length / t.length;
  return {
    xt: x1.map((v, i) => (1 - t[Math.floor(i / per)]) * x0[i] + t[Math.floor(i / per)] * v),
    target: x1.map((v, i) => v - x0[i]),
  };
}
