/**
 * Precision casts for mixed precision: the f16 copy of the f32 weights (refreshed after each
 * optimizer step, e.g. over a whole f16 FlatBuffer of the same layout) and f16 → f32 widening.
 * Both tensors must have the same length; any shape (flat views are typical).
 */
import type { Dispatch, Kernels, Tensor } from "../gpu/kernels.ts";
import { groupsFor, shader } from "./common.ts";
import code from "../../shaders/cast.wgsl" with { type: "text" };

function cast(k: Kernels, name: string, src: Tensor, dst: Tensor, from: string, to: string) {
  const sd = src.dtype ?? "f32", dd = dst.dtype ?? "f32";
  if (sd !== from || dd !== to) {
    throw new Error(
      `${name}: expected a ${from} source and a ${to} destination, got ${sd} → ${dd}`,
    );
  }
  if (src.length !== dst.length) {
    throw new Error(`${name}: source has ${src.length} elements, destination ${dst.length}`);
  }
  if (!k.gpu.features.has("shader-f16")) {
    throw new Error(`${name}: needs the adapter feature shader-f16, which it lacks`);
  }
  const vec = src.length % 4 === 0;
  const n = vec ? src.length / 4 : src.length;
  const ty = (t: string) => (vec ? `vec4<${t}>` : t);
  const wgsl = shader(code, { S: ty(from), D: ty(to), N: n });
  return [{ ...k.dispatch(wgsl, "convert", [src, dst], groupsFor(n)), label: name }];
}

/** dst (f16) = src (f32) rounded to nearest. */
export function castF32ToF16(k: Kernels, src: Tensor, dst: Tensor): Dispatch[] {
  return cast(k, "cast_f32_f16", src, dst, "f32", "f16");
}

/** dst (f32) = src (f16), exactly. */
export function castF16ToF32(k: Kernels, src: Tensor, dst: Tensor): Dispatch[] {
  return cast(k, "cast_f16_f32", src, dst, "f16", "f32");
}
