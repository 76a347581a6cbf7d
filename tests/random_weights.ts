/** Random non-zero DiT weights for whole-model tests (DiT's zero init would hide bugs). */
import type { DiTConfig } from "../src/model/config.ts";
import { paramLayout, paramSpecs, posEmbed } from "../src/model/params.ts";
import type { Rng } from "./reference/random.ts";

/**
 * Random non-zero weights (pos_embed exact: the loader checks it), as a flat vector and as the
 * reference's map; `scale` multiplies every drawn tensor's standard deviation.
 */
export function randomWeights(
  cfg: DiTConfig,
  rng: Rng,
  scale = 1,
): { flat: Float32Array; map: Map<string, Float64Array> } {
  const layout = paramLayout(cfg);
  const flat = new Float32Array(layout.total);
  const map = new Map<string, Float64Array>();
  for (const s of paramSpecs(cfg)) {
    const slot = layout.get(s.name);
    const fan = s.shape.length > 1 ? s.shape.slice(1).reduce((a, b) => a * b, 1) : 4;
    const v = s.name === "pos_embed"
      ? Float64Array.from(posEmbed(cfg))
      : rng.normals(slot.length, scale * (s.name.endsWith("bias") ? 0.1 : 1 / Math.sqrt(fan)));
    flat.set(Float32Array.from(v), slot.offset);
    map.set(s.name, v);
  }
  return { flat, map };
}
