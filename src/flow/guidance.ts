/**
 * Classifier-free guidance: v = v_u + s·(v_c − v_u), optionally only for t inside an interval.
 * `cfgCombine` is the one place the formula is written; the GPU sampler (src/model/sampler.ts)
 * and the CPU tests both go through it, on their `VecOps`.
 */
import type { VecOps } from "./vecops.ts";
import type { VelocityFn } from "./sample.ts";

/**
 * out ← v_u + s·(v_c − v_u), computed as (1−s)·v_u + s·v_c (one lincomb). `out` may be vc or vu.
 * Scale 1 (no guidance) copies v_c without reading v_u.
 */
export function cfgCombine<V>(ops: VecOps<V>, vc: V, vu: V, scale: number, out: V = vc): void {
  if (scale === 1) ops.copy(out, vc);
  else ops.lincomb(out, [1 - scale, scale], [vu, vc]);
}

/** Whether guidance applies at time t: always without an interval, else a ≤ t ≤ b. */
export function guidanceActive(t: number, interval?: [number, number]): boolean {
  return !interval || (t >= interval[0] && t <= interval[1]);
}

export interface CfgOptions {
  scale: number;
  /** Guide only for t in [a, b] (times in the 0 = noise … 1 = data convention). */
  interval?: [number, number];
}

/**
 * A guided velocity from a conditional and an unconditional one. Outside the interval (or with
 * scale 1) only the conditional one is evaluated. `free()` releases its scratch vector.
 */
export function cfgVelocity<V>(
  ops: VecOps<V>,
  cond: VelocityFn<V>,
  uncond: VelocityFn<V>,
  opts: CfgOptions,
): VelocityFn<V> & { free(): void } {
  let vu: V | undefined;
  const fn = async (x: V, t: number, out: V) => {
    await cond(x, t, out);
    if (opts.scale === 1 || !guidanceActive(t, opts.interval)) return;
    vu ??= ops.alloc(out);
    await uncond(x, t, vu);
    cfgCombine(ops, out, vu, opts.scale, out);
  };
  return Object.assign(fn, {
    free() {
      if (vu !== undefined) ops.free(vu);
      vu = undefined;
    },
  });
}
