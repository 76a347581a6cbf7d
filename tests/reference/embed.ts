/** Float64 reference of the embedding family: timestep features, label table, add. */
export type F64 = Float64Array;

const HALF = 128;
const freq = (i: number) => Math.exp(-Math.log(10000) * i / HALF);

/** out [B, 256] = [cos(tScale·t·f), sin(tScale·t·f)] (DiT timestep_embedding, cos first). */
export function timestepEmbedding(t: F64, tScale: number): F64 {
  const out = new Float64Array(t.length * 2 * HALF);
  for (let b = 0; b < t.length; b++) {
    for (let i = 0; i < HALF; i++) {
      const arg = tScale * t[b] * freq(i);
      out[b * 2 * HALF + i] = Math.cos(arg);
      out[b * 2 * HALF + HALF + i] = Math.sin(arg);
    }
  }
  return out;
}

/** out [B, D] = table[labels[b]]. */
export function labelEmbed(table: F64, labels: F64, D: number): F64 {
  const out = new Float64Array(labels.length * D);
  labels.forEach((r, b) => out.set(table.subarray(r * D, r * D + D), b * D));
  return out;
}

/** dtable [R, D]: rows summed over the samples that selected them. */
export function labelEmbedBackward(labels: F64, dout: F64, R: number, D: number): F64 {
  const dt = new Float64Array(R * D);
  labels.forEach((r, b) => {
    for (let d = 0; d < D; d++) dt[r * D + d] += dout[b * D + d];
  });
  return dt;
}

export function add(a: F64, b: F64): F64 {
  return a.map((v, i) => v + b[i]);
}
