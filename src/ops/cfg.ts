/** Classifier-free guidance combine over a batched [cond; null] velocity. */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import code from "../../shaders/cfg.wgsl" with { type: "text" };

/**
 * out = v_u + scale·(v_c − v_u) where `v` holds [cond; uncond] halves (each `out.length` long);
 * scale 1 copies the conditional half (and `v` may then hold just that half).
 */
export function cfgCombineForward(k: Kernels, v: Tensor, out: Tensor, scale: number): Dispatch {
  const n = out.length;
  const need = scale === 1 ? n : 2 * n;
  if (v.length < need) throw new Error(`cfg: velocity has ${v.length} values, need ${need}`);
  return k.dispatch(code, "cfg_combine", [v, out, k.uniform([n, f32(scale)])], Math.ceil(n / 256));
}
