/**
 * What every op wrapper shares: the workgroup size, the WGSL prelude (shaders/common.wgsl: `WG`,
 * `index()`, `tree_sum()`, `tree_sum2()`), workgroup counts and argument checks.
 */
import { specialise, type Tensor } from "../gpu/kernels.ts";
import prelude from "../../shaders/common.wgsl" with { type: "text" };

/** Threads per workgroup of one-thread-per-element kernels (WGSL: `WG`). */
export const WORKGROUP_SIZE = 256;

const head = specialise(prelude, { WG: WORKGROUP_SIZE });

/**
 * An op family's WGSL with the prelude in front and its own `{{NAME}}` placeholders filled.
 * Pipelines are cached by code, so call it once per variant (module level or a cache).
 */
export function shader(code: string, consts?: Record<string, string | number>): string {
  const body = consts ? specialise(code, consts) : code;
  // Directives (`enable f16;`) must precede every declaration: lift them above the prelude.
  const directives = body.match(/^enable [^;]+;\s*$/gm) ?? [];
  const rest = body.replace(/^enable [^;]+;\s*$/gm, "");
  return [...directives, head, rest].join("\n");
}

/** Workgroups for one thread per element of `n` (`k.dispatch` turns it into a 2D grid). */
export function groupsFor(n: number): number {
  return Math.ceil(n / WORKGROUP_SIZE);
}

/** The common length of `ts`; throws `${name}: tensor lengths differ` otherwise. */
export function sameLength(name: string, ...ts: Tensor[]): number {
  const n = ts[0].length;
  for (const t of ts) if (t.length !== n) throw new Error(`${name}: tensor lengths differ`);
  return n;
}
