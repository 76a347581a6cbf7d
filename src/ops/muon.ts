/**
 * Muon (Keller Jordan's, github.com/KellerJordan/Muon) on the GPU for 2-D matrices held in flat
 * buffers: SGD momentum with Nesterov, the update orthogonalised by 5 quintic Newton–Schulz
 * iterations, scaled by √max(1, rows/cols), with decoupled weight decay, EMA and (mixed
 * precision) the f16 weight copy; after the global gradient-norm clip and, in mixed precision,
 * the loss scale's unscaling and overflow skip, as the AdamW steps of optim.ts. In float64 terms
 * (tests/reference/muon.ts), per matrix W [rows, cols] (rows = PyTorch's out features):
 *   buf ← μ·buf + g;  u ← g + μ·buf;  X ← u/(‖u‖_F + 1e-7), transposed when rows > cols;
 *   5 times: A ← X·Xᵀ;  X ← (a·I + b·A + c·A·A)·X,  (a, b, c) = (3.4445, −4.7750, 2.0315);
 *   W ← W·(1 − lr·wd) − lr·√max(1, rows/cols)·X (transposed back).
 * The products are the linear GEMMs in f32 (A·A as A·Aᵀ: A = X·Xᵀ is symmetric bit for bit, each
 * of its elements summing the same products in the same order); the elementwise parts are
 * shaders/muon.wgsl. Matrices are processed one after another through one set of scratch.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import { groupsFor, sameLength, shader } from "./common.ts";
import { sumSquares } from "./reduce.ts";
import { linearBackwardInput, linearForward } from "./linear.ts";
import source from "../../shaders/muon.wgsl" with { type: "text" };

/** Keller Jordan's quintic Newton–Schulz coefficients and iteration count. */
export const NS_COEFFICIENTS = { a: 3.4445, b: -4.775, c: 2.0315 } as const;
export const NS_STEPS = 5;

const [base, ampSection] = source.split(/^\/\/ @section amp.*$/m);
const code = shader(base);
let ampCode: string | undefined;
function amp(k: Kernels): string {
  if (!k.gpu.features.has("shader-f16")) {
    throw new Error("muon: mixed precision needs the adapter feature shader-f16");
  }
  ampCode ??= shader("enable f16;\n" + base + ampSection);
  return ampCode;
}

/** One matrix Muon updates: views (the parameter's shape, rows·cols elements) into flat buffers. */
export interface MuonMatrix {
  name: string;
  rows: number;
  cols: number;
  params: Tensor;
  grads: Tensor;
  /** The momentum buffer. */
  momentum: Tensor;
  ema: Tensor;
  /** Mixed precision: the f16 weight copy. */
  params16?: Tensor;
}

/** Per-step settings (the schedule's learning rate; clip and EMA decay as the AdamW step's). */
export interface MuonHyper {
  lr: number;
  momentum: number;
  weightDecay: number;
  /** Clip the global gradient norm to this; ≤ 0 disables clipping. */
  maxNorm: number;
  emaDecay: number;
}

const HYPER_BYTES = 32;

/** The uniform buffer of the per-step settings (write it with `writeMuonHyper`). */
export function muonHyper(k: Kernels): GPUBuffer {
  return k.device.createBuffer({
    label: "muon hyper",
    size: HYPER_BYTES,
    usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
  });
}

/** Queue a write of this step's settings (ordered before the next submit). */
export function writeMuonHyper(k: Kernels, buf: GPUBuffer, h: MuonHyper): void {
  const v = new Float32Array(HYPER_BYTES / 4);
  v.set([h.lr, 1 - h.lr * h.weightDecay, h.momentum, h.maxNorm, h.emaDecay, 1 - h.emaDecay]);
  k.device.queue.writeBuffer(buf, 0, v);
}

/** The scalars of one matrix (WGSL struct `Mat`). */
function matUniform(k: Kernels, n: number, rows: number, cols: number, transposed: boolean) {
  const { a, b, c } = NS_COEFFICIENTS;
  const scale = Math.sqrt(Math.max(1, rows / cols));
  return k.uniform([n, rows, cols, transposed ? 1 : 0, f32(scale), f32(a), f32(b), f32(c)]);
}

/** A view of the first `shape`'s elements of a scratch tensor. */
function part(t: Tensor, shape: number[]): Tensor {
  return { ...t, length: shape.reduce((x, y) => x * y, 1), shape };
}

/**
 * X ← NS5(X) for X [r, q] (r ≤ q, already normalised), ping-ponging between `x` and `y`; returns
 * the dispatches and the tensor holding the result. `gram`, `gram2`, `poly` are [r, r] scratch.
 */
export function newtonSchulz(
  k: Kernels,
  x: Tensor,
  y: Tensor,
  scratch: { gram: Tensor; gram2: Tensor; poly: Tensor },
  steps = NS_STEPS,
): { dispatches: Dispatch[]; out: Tensor } {
  const [r, q] = x.shape;
  if (x.shape.length !== 2 || r > q) throw new Error(`newtonSchulz: X [${x.shape}] must be wide`);
  const A = part(scratch.gram, [r, r]), AA = part(scratch.gram2, [r, r]);
  const P = part(scratch.poly, [r, r]);
  const u = matUniform(k, r * r, r, r, false);
  const ds: Dispatch[] = [];
  let src = x, dst = part(y, [r, q]);
  for (let s = 0; s < steps; s++) {
    ds.push(
      ...linearForward(k, src, src, null, A),
      ...linearForward(k, A, A, null, AA),
      k.dispatch(code, "ns_poly", [u, A, AA, P], groupsFor(r * r)),
      ...linearBackwardInput(k, P, src, dst),
    );
    [src, dst] = [dst, src];
  }
  return { dispatches: ds.map((d) => ({ ...d, label: `muon ${d.label}` })), out: src };
}

/**
 * One Muon step over `matrices` (recorded once, replayed every step): `norm` is the global
 * gradient norm (gradNormForward's, over every gradient), `hyper` the `muonHyper` buffer, `amp`
 * the loss scaler of mixed precision (optim.ts's AMP state; its scale is read, not changed).
 */
export function muonStep(
  k: Kernels,
  matrices: MuonMatrix[],
  norm: Tensor,
  hyper: GPUBuffer,
  ampState?: Tensor,
): Dispatch[] {
  if (!matrices.length) return [];
  const wide = matrices.map((m) => [Math.min(m.rows, m.cols), Math.max(m.rows, m.cols)]);
  const maxX = Math.max(...wide.map(([r, q]) => r * q));
  const maxA = Math.max(...wide.map(([r]) => r * r));
  const xa = k.tensor([maxX], "muon X"), xb = k.tensor([maxX], "muon X'");
  const scratch = {
    gram: k.tensor([maxA], "muon X·Xᵀ"),
    gram2: k.tensor([maxA], "muon A·A"),
    poly: k.tensor([maxA], "muon a·I + b·A + c·A·A"),
  };
  const nrm = k.tensor([1], "muon update norm"), coef = k.tensor([2], "muon coef");
  const ds: Dispatch[] = [
    ampState
      ? k.dispatch(code, "muon_coef_amp", [hyper, norm, ampState, coef], 1)
      : k.dispatch(code, "muon_coef", [hyper, norm, coef], 1),
  ];
  for (const [i, m] of matrices.entries()) {
    const n = sameLength(`muon ${m.name}`, m.params, m.grads, m.momentum, m.ema);
    if (n !== m.rows * m.cols) {
      throw new Error(`muon ${m.name}: ${n} elements, not ${m.rows}×${m.cols}`);
    }
    if (Boolean(ampState) !== Boolean(m.params16)) {
      throw new Error(`muon ${m.name}: give the f16 copy exactly when the loss scaler is given`);
    }
    const [r, q] = wide[i], transposed = m.rows > m.cols;
    const u = matUniform(k, n, m.rows, m.cols, transposed);
    const x = part(xa, [r, q]);
    const ns = newtonSchulz(k, x, xb, scratch);
    const update = m.params16
      ? k.dispatch(
        amp(k),
        "muon_update_amp",
        [u, hyper, ns.out, coef, m.params, m.ema, m.params16],
        groupsFor(n),
      )
      : k.dispatch(code, "muon_update", [u, hyper, ns.out, coef, m.params, m.ema], groupsFor(n));
    ds.push(
      k.dispatch(code, "muon_momentum", [u, hyper, m.grads, coef, m.momentum, x], groupsFor(n)),
      ...sumSquares(k, x, nrm, { sqrt: true }),
      k.dispatch(code, "muon_normalize", [u, nrm, x], groupsFor(n)),
      ...ns.dispatches,
      update,
    );
  }
  return ds;
}
