/**
 * The products tasks/matmul_bench.ts times: the DiT-S/2 model's linear layers at batch 128
 * (forward, dX and dW+db of each), square ones, the fused epilogues, or one given shape; and each
 * product as the GEMM the planner sees.
 */
import type { Gemm } from "../src/ops/linear.ts";

export type Op = "fwd" | "dx" | "dw";
export type Prec = "f32" | "f16";
export type Epi = "gelu" | "gate" | "geluGrad";

export interface Case {
  name: string;
  op: Op;
  M: number;
  N: number;
  K: number;
  /** Calls per DiT-S/2 training step (0: not a model product). */
  calls: number;
  epi?: Epi;
}

/** The model's products: T tokens of width D, depth 12 (DiT-S/2 at batch 128 on 28×28×1). */
export function modelCases(T: number, D: number): Case[] {
  const DEPTH = 12;
  const layers: [string, number, number, number, number][] = [
    ["qkv", T, 3 * D, D, DEPTH],
    ["fc1", T, 4 * D, D, DEPTH],
    ["fc2", T, D, 4 * D, DEPTH],
    ["proj", T, D, D, DEPTH],
    ["adaLN", 128, 6 * D, D, DEPTH],
    ["x_embedder", T, D, 4, 1],
    ["final", T, 4, D, 1],
  ];
  const out: Case[] = [];
  for (const [name, M, N, K, calls] of layers) {
    for (const op of ["fwd", "dx", "dw"] as Op[]) out.push({ name, op, M, N, K, calls });
  }
  return out;
}

const square = (n: number): Case => ({ name: `${n}³`, op: "fwd", M: n, N: n, K: n, calls: 0 });

/**
 * The products of a run: the sweep's (the square and the model's), else also 2× the square and
 * the fused epilogues, or the three products of `shape` ("M,N,K"); filtered by `only`.
 */
export function benchCases(
  T: number,
  D: number,
  SQ: number,
  sweepMode: boolean,
  shape: string | undefined,
  only: string[] | null,
): Case[] {
  const model = modelCases(T, D);
  let cases: Case[] = sweepMode ? [square(SQ), ...model] : [
    square(SQ),
    square(2 * SQ),
    ...model,
    { name: "fc1 +gelu", op: "fwd", M: T, N: 4 * D, K: D, calls: 0, epi: "gelu" },
    { name: "fc2 +gate+res", op: "fwd", M: T, N: D, K: 4 * D, calls: 0, epi: "gate" },
    { name: "fc2 dX +gelu'", op: "dx", M: T, N: D, K: 4 * D, calls: 0, epi: "geluGrad" },
  ];
  if (shape && !sweepMode) {
    const [M, N, K] = shape.split(",").map(Number);
    cases = (["fwd", "dx", "dw"] as Op[]).map((op) => ({ name: "custom", op, M, N, K, calls: 0 }));
  }
  if (only) cases = cases.filter((c) => only.some((o) => c.name.includes(o)));
  if (cases.length === 0) throw new Error("no products left to time (check --only)");
  return cases;
}

export const gemmOf = (c: Case, prec: Prec): Gemm =>
  c.op === "fwd"
    ? { R: c.M, Q: c.N, L: c.K, a: "rl", b: "ql", f16: prec === "f16" }
    : c.op === "dx"
    ? { R: c.M, Q: c.K, L: c.N, a: "rl", b: "lq", f16: prec === "f16" }
    : { R: c.N, Q: c.K, L: c.M, a: "lr", b: "lq", f16: prec === "f16" };

export const opName = { fwd: "y = x·wᵀ+b", dx: "dx = dy·w", dw: "dw = dyᵀ·x, db" };
export const dimStr = (c: Case) => `${c.M}×${c.N}×${c.K}`;
