/**
 * Float64 reference of the optimizer: torch.nn.utils.clip_grad_norm_ followed by
 * torch.optim.AdamW (decoupled weight decay, bias corrections), and an EMA of the parameters.
 */
export type F64 = Float64Array;

export interface AdamwState {
  p: F64;
  m: F64;
  v: F64;
  ema: F64;
}

export function gradNorm(g: F64): number {
  let s = 0;
  for (const x of g) s += x * x;
  return Math.sqrt(s);
}

/** One step (in place): clip (maxNorm > 0), AdamW at 1-based `step`, then the EMA update. */
export function adamwStep(
  s: AdamwState,
  grads: F64,
  h: {
    lr: number;
    beta1: number;
    beta2: number;
    eps: number;
    weightDecay: number;
    step: number;
    maxNorm: number;
    emaDecay: number;
  },
): void {
  const norm = gradNorm(grads);
  const coef = h.maxNorm > 0 ? Math.min(1, h.maxNorm / (norm + 1e-6)) : 1;
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < s.p.length; i++) {
    const g = grads[i] * coef;
    s.p[i] *= 1 - h.lr * h.weightDecay;
    s.m[i] = h.beta1 * s.m[i] + (1 - h.beta1) * g;
    s.v[i] = h.beta2 * s.v[i] + (1 - h.beta2) * g * g;
    const denom = Math.sqrt(s.v[i]) / Math.sqrt(bc2) + h.eps;
    s.p[i] -= (h.lr / bc1) * s.m[i] / denom;
    s.ema[i] = h.emaDecay * s.ema[i] + (1 - h.emaDecay) * s.p[i];
  }
}
