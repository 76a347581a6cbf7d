/** Float64 reference of the evaluation classifier: MLP with GELU-tanh, cross-entropy, gradients. */
import { gelu, geluBackward } from "./ops.ts";
import { xent, xentBackward } from "./xent.ts";

export type F64 = Float64Array;

/** Weights per layer: w [out, in], b [out]. */
export interface Layer {
  w: F64;
  b: F64;
}

function linear(x: F64, B: number, l: Layer, nIn: number, nOut: number): F64 {
  const y = new Float64Array(B * nOut);
  for (let r = 0; r < B; r++) {
    for (let o = 0; o < nOut; o++) {
      let s = l.b[o];
      for (let i = 0; i < nIn; i++) s += x[r * nIn + i] * l.w[o * nIn + i];
      y[r * nOut + o] = s;
    }
  }
  return y;
}

/** Forward: pre-activations, activations (the last hidden one = features) and logits. */
export function mlpForward(x: F64, B: number, widths: number[], layers: Layer[]) {
  const pre: F64[] = [], act: F64[] = [];
  let h = x;
  for (let l = 0; l < layers.length; l++) {
    const y = linear(h, B, layers[l], widths[l], widths[l + 1]);
    if (l === layers.length - 1) return { pre, act, logits: y };
    pre.push(y);
    h = gelu(y);
    act.push(h);
  }
  throw new Error("unreachable");
}

/** Mean cross-entropy and its gradient with respect to every layer's weights and bias. */
export function mlpLossGrad(x: F64, labels: F64, widths: number[], layers: Layer[]) {
  const B = labels.length;
  const { pre, act, logits } = mlpForward(x, B, widths, layers);
  const loss = xent(logits, labels)[0];
  let dy = xentBackward(logits, labels, 1);
  const grads: Layer[] = [];
  for (let l = layers.length - 1; l >= 0; l--) {
    const nIn = widths[l], nOut = widths[l + 1];
    const input = l === 0 ? x : act[l - 1];
    const dw = new Float64Array(nOut * nIn), db = new Float64Array(nOut);
    for (let r = 0; r < B; r++) {
      for (let o = 0; o < nOut; o++) {
        db[o] += dy[r * nOut + o];
        for (let i = 0; i < nIn; i++) dw[o * nIn + i] += dy[r * nOut + o] * input[r * nIn + i];
      }
    }
    grads[l] = { w: dw, b: db };
    if (l > 0) {
      const dx = new Float64Array(B * nIn);
      for (let r = 0; r < B; r++) {
        for (let i = 0; i < nIn; i++) {
          let s = 0;
          for (let o = 0; o < nOut; o++) s += dy[r * nOut + o] * layers[l].w[o * nIn + i];
          dx[r * nIn + i] = s;
        }
      }
      dy = geluBackward(pre[l - 1], dx);
    }
  }
  return { loss, grads, logits, features: act[act.length - 1] };
}
