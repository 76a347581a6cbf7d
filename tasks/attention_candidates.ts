/**
 * The tile settings tasks/attention_bench.ts sweeps, per precision and kernel, and how it prints
 * them (a short label, and TypeScript to paste into ATTENTION_DEFAULTS).
 */
import type { AttentionTiles } from "../src/ops/attention.ts";

// Candidates per precision and kernel (rows/keys/threads and code-shape flags; see
// AttentionTiles). Register-blocked ones around 4 warps a workgroup and ~20 warps an SM of
// Hopper's 228 KB, row-wise ones (f32) like the previous kernels.
const row = (rows: number, keys: number, extra: Partial<AttentionTiles> = {}): AttentionTiles => ({
  rows,
  keys,
  threads: rows,
  rowwise: true,
  ...extra,
});
const blk = (rows: number, keys: number, threads: number, extra: Partial<AttentionTiles> = {}) => ({
  rows,
  keys,
  threads,
  ...extra,
});
export const SWEEP: Record<"f32" | "f16", Record<"fwd" | "dq" | "dkv", AttentionTiles[]>> = {
  f32: {
    fwd: [
      row(64, 16),
      row(64, 16, { prefetch: true }),
      row(64, 8),
      row(32, 16),
      row(64, 32),
      row(128, 16),
      blk(64, 32, 128),
      blk(64, 32, 128, { prefetch: false }),
      blk(64, 16, 128),
      blk(64, 32, 64),
      blk(32, 32, 64),
      blk(32, 16, 32),
      blk(64, 16, 64),
    ],
    dq: [
      row(64, 16),
      row(64, 16, { prefetch: true }),
      row(64, 8),
      row(32, 16),
      row(64, 32),
      blk(64, 16, 128),
      blk(64, 16, 128, { prefetch: false }),
      blk(64, 16, 64),
      blk(32, 32, 128),
      blk(32, 32, 128, { share: false }),
      blk(32, 16, 64),
      blk(32, 32, 64),
    ],
    dkv: [
      blk(8, 32, 64),
      blk(8, 32, 64, { prefetch: false }),
      blk(32, 32, 128),
      blk(32, 32, 128, { prefetch: false }),
      blk(16, 32, 128),
      blk(16, 32, 64),
      blk(8, 64, 128),
      blk(16, 32, 32),
    ],
  },
  f16: {
    fwd: [
      blk(32, 16, 32),
      blk(64, 16, 64),
      blk(64, 32, 128),
      blk(32, 32, 64),
      blk(64, 64, 128),
      blk(64, 32, 64),
      blk(128, 32, 128),
      blk(32, 16, 32, { chunk: 32 }),
      blk(64, 32, 128, { chunk: 32 }),
    ],
    dq: [
      blk(64, 16, 64),
      blk(64, 16, 64, { share: false }),
      blk(32, 32, 64),
      blk(64, 32, 128),
      blk(64, 16, 128),
      blk(128, 16, 128),
      blk(32, 16, 32),
      blk(64, 16, 64, { chunk: 32 }),
      blk(64, 32, 128, { chunk: 32 }),
    ],
    dkv: [
      blk(32, 32, 128),
      blk(16, 32, 64),
      blk(8, 32, 64),
      blk(32, 64, 128),
      blk(16, 64, 128),
      blk(32, 32, 128, { chunk: 32 }),
      blk(16, 32, 64, { chunk: 32 }),
    ],
  },
};

/** The tiles as TypeScript (for the defaults) and as a short label. */
export const tilesTs = (t: AttentionTiles) =>
  `{ rows: ${t.rows}, keys: ${t.keys}, threads: ${t.threads}${t.rowwise ? ", rowwise: true" : ""}${
    t.prefetch !== undefined ? `, prefetch: ${t.prefetch}` : ""
  }${t.share !== undefined ? `, share: ${t.share}` : ""}${t.chunk ? `, chunk: ${t.chunk}` : ""} }`;
export const tilesLabel = (t: AttentionTiles) =>
  `${t.rows}/${t.keys}/${t.threads}${t.rowwise ? " row" : ""}${
    t.prefetch === false ? " nopf" : t.prefetch ? " pf" : ""
  }${t.share === undefined ? "" : t.share ? " share" : " noshare"}${t.chunk ? ` c${t.chunk}` : ""}`;
