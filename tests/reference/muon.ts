/**
 * Float64 reference of Muon (Keller Jordan's, github.com/KellerJordan/Muon) for one 2-D matrix
 * of `rows` (PyTorch's out features) × `cols`, on an already clipped (and unscaled) gradient:
 *   buf ← μ·buf + g;  u ← g + μ·buf  (Nesterov)
 *   X ← u/(‖u‖_F + 1e-7), transposed when rows > cols
 *   5 times: A ← X·Xᵀ;  B ← b·A + c·A·A;  X ← a·X + B·X   with (a, b, c) = (3.4445, −4.7750, 2.0315)
 *   O ← X (transposed back) · √max(1, rows/cols)
 *   p ← p·(1 − lr·wd) − lr·O  (decoupled weight decay, as AdamW's)
 * Matrices are row-major Float64Arrays.
 */
export type F64 = Float64Array;

export const NS_COEFFICIENTS = [3.4445, -4.775, 2.0315] as const;
export const NS_STEPS = 5;

/** C [n, m] = A [n, k] · B [k, m]. */
function matmul(a: F64, b: F64, n: number, k: number, m: number): F64 {
  const c = new Float64Array(n * m);
  for (let i = 0; i < n; i++) {
    for (let l = 0; l < k; l++) {
      const x = a[i * k + l];
      for (let j = 0; j < m; j++) c[i * m + j] += x * b[l * m + j];
    }
  }
  return c;
}

/** Aᵀ of A [n, m]. */
export function transpose(a: F64, n: number, m: number): F64 {
  const t = new Float64Array(n * m);
  for (let i = 0; i < n; i++) for (let j = 0; j < m; j++) t[j * n + i] = a[i * m + j];
  return t;
}

/** The orthogonalised update O [rows, cols] of u (before the √max(1, rows/cols) scale). */
export function newtonSchulz(u: F64, rows: number, cols: number, steps = NS_STEPS): F64 {
  const [a, b, c] = NS_COEFFICIENTS;
  const tall = rows > cols;
  const r = tall ? cols : rows, q = tall ? rows : cols;
  let x = tall ? transpose(u, rows, cols) : Float64Array.from(u);
  let sq = 0;
  for (const v of x) sq += v * v;
  const inv = 1 / (Math.sqrt(sq) + 1e-7);
  x = x.map((v) => v * inv);
  for (let s = 0; s < steps; s++) {
    const A = matmul(x, transpose(x, r, q), r, q, r);
    const AA = matmul(A, A, r, r, r);
    const B = A.map((v, i) => b * v + c * AA[i]);
    const BX = matmul(B, x, r, r, q);
    x = x.map((v, i) => a * v + BX[i]);
  }
  return tall ? transpose(x, r, q) : x;
}

export interface MuonHyper {
  lr: number;
  momentum: number;
  weightDecay: number;
}

/** One Muon step of a [rows, cols] matrix in place (p, buf) from its gradient g. */
export function muonStep(
  p: F64,
  buf: F64,
  g: F64,
  rows: number,
  cols: number,
  h: MuonHyper,
): void {
  const u = new Float64Array(g.length);
  for (let i = 0; i < g.length; i++) {
    buf[i] = h.momentum * buf[i] + g[i];
    u[i] = g[i] + h.momentum * buf[i];
  }
  const o = newtonSchulz(u, rows, cols);
  const scale = Math.sqrt(Math.max(1, rows / cols));
  for (let i = 0; i < p.length; i++) {
    p[i] = p[i] * (1 - h.lr * h.weightDecay) - h.lr * scale * o[i];
  }
}
