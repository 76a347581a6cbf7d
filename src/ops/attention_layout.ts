/**
 * Tile settings of the attention kernels (src/ops/attention.ts): the block sizes a caller may
 * force, the default table per precision, each kernel's thread layout and workgroup memory for a
 * head size, and the pick of tiles that fit a device.
 */

/**
 * Block sizes and code shape of one kernel. attn_fwd and attn_bwd_dq: `rows` query rows per
 * workgroup, `keys` keys per tile of workgroup memory. attn_bwd_dkv: `keys` keys per workgroup,
 * `rows` query rows per tile. `threads` per workgroup. Register-blocked: rows (fwd, dq) and keys
 * (dkv) are multiples of 4. Row-wise: threads = rows.
 */
export interface AttentionTiles {
  rows: number;
  keys: number;
  threads: number;
  /**
   * Quads of owned rows (fwd, dq: query rows; dkv: keys) per thread in phase 1 and phase 2 of
   * the kernel (see `attentionLayout`); default: the split that loads the fewest tile values.
   */
  quads?: [number, number];
  /** fwd and dq, f32: one thread per query row instead of register blocks. */
  rowwise?: boolean;
  /** Read the next tile into registers while this one is multiplied (default: not rowwise). */
  prefetch?: boolean;
  /**
   * dq: dS reuses V's workgroup buffer (one more barrier per tile); default: when that lets more
   * workgroups share an SM of 228 KB (NVIDIA Hopper).
   */
  share?: boolean;
  /** f16: products per f16 accumulator (default 16; `f16Chunk` overrides). */
  chunk?: number;
}

/** Block sizes (tests force small ones to span several blocks with tiny shapes). */
export interface AttentionOptions {
  fwd?: AttentionTiles;
  dq?: AttentionTiles;
  dkv?: AttentionTiles;
  /** f16 only: products per f16 accumulator before it is added into f32, every kernel. */
  f16Chunk?: number;
}

/**
 * Default tiles, first that fits the head size and the device's workgroup memory wins. Update
 * from `deno run -A tasks/attention_bench.ts` (its last lines print these lists). Current: the
 * H200 measurements of gpu run 1 (DiT-S/2 and DiT-B/2 shapes): for f32 the row-wise forward and
 * dQ (the previous kernels: 0.55 and 0.84 ms at DiT-S/2 against 0.65 and 1.57 register-blocked)
 * and the fused dK/dV (1.05 ms against 0.81 + 0.53 for the previous separate ones).
 */
export const ATTENTION_DEFAULTS: Record<
  "f32" | "f16",
  Record<"fwd" | "dq" | "dkv", AttentionTiles[]>
> = {
  f32: {
    fwd: [{ rows: 64, keys: 16, threads: 64, rowwise: true }],
    dq: [{ rows: 64, keys: 16, threads: 64, rowwise: true }],
    dkv: [{ rows: 8, keys: 32, threads: 64 }, { rows: 32, keys: 32, threads: 128 }],
  },
  f16: {
    fwd: [{ rows: 32, keys: 16, threads: 32 }, { rows: 64, keys: 16, threads: 64 }],
    dq: [{ rows: 64, keys: 16, threads: 64 }, { rows: 32, keys: 32, threads: 64 }],
    dkv: [{ rows: 32, keys: 32, threads: 128 }, { rows: 16, keys: 32, threads: 64 }],
  },
};

// ---------------------------------------------------------------------------------------------
// Thread layouts.

export type Kernel = "fwd" | "dq" | "dkv";

/** One kernel's block sizes, thread layout and workgroup memory (independent of T). */
export interface AttentionLayout {
  kernel: Kernel;
  /** The tiles with every default filled in. */
  tiles: Required<Omit<AttentionTiles, "chunk">> & { chunk?: number };
  /** Template constants (sizes, phase layouts). */
  consts: Record<string, number | boolean>;
  /** Workgroup memory in bytes. */
  bytes: number;
}

const divisors = (n: number) =>
  Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

/** Workgroup memory per SM of NVIDIA Hopper and its per-workgroup reserve (the `share` default). */
const SM_BYTES = 228 * 1024, WG_RESERVE = 1024;
const perSm = (bytes: number) => Math.floor(SM_BYTES / (bytes + WG_RESERVE));

/**
 * Thread layout of a kernel for head size dh, or an error message. Register-blocked: phase 1
 * (the score block S = Q·Kᵀ, and dP = dO·Vᵀ in the backward): each thread owns a block of A quads
 * of the owned side × B of the streamed side (fwd/dq: 4·A query rows × B keys; dkv: 4·A keys × B
 * query rows). Phase 2 (the product with P or dS): 4·C owned rows × E vec4 slots of dh. Among the
 * splits that keep each phase's f32 accumulators within 64 registers (if any do), the one that
 * loads the fewest tile values per product wins.
 */
export function attentionLayout(
  kernel: Kernel,
  tiles: AttentionTiles,
  dh: number,
  f16: boolean,
): AttentionLayout | string {
  const { rows, keys, threads: NT, quads } = tiles;
  const rowwise = tiles.rowwise ?? false, prefetch = tiles.prefetch ?? !rowwise;
  const DH4 = dh / 4, DH4P = DH4 | 1;
  const what = `${kernel} tiles rows=${rows} keys=${keys} threads=${NT}${
    rowwise ? " rowwise" : ""
  } at dh=${dh}`;
  if (![rows, keys, NT].every((v) => Number.isInteger(v) && v > 0)) {
    return `${what}: sizes must be positive integers`;
  }
  if (tiles.chunk !== undefined && !(Number.isInteger(tiles.chunk) && tiles.chunk > 0)) {
    return `${what}: chunk must be a positive integer`;
  }
  const eb = f16 ? 2 : 4, v4 = 4 * eb;
  if (rowwise) {
    if (kernel === "dkv") return `${what}: rowwise is for fwd and dq only`;
    if (f16) return `${what}: rowwise kernels are f32 only`;
    if (rows !== NT) return `${what}: rowwise needs threads = rows (one thread per query row)`;
    return {
      kernel,
      tiles: { rows, keys, threads: NT, quads: [1, 1], rowwise, prefetch, share: false },
      consts: { OWN: rows, TILE: keys, DH: dh, DH4, DH4P, NT, NLD: Math.ceil(keys * DH4 / NT) },
      bytes: 2 * keys * DH4 * v4,
    };
  }
  const own = kernel === "dkv" ? keys : rows; // the side a workgroup owns (quads)
  const tile = kernel === "dkv" ? rows : keys; // the side that streams through tiles
  if (own % 4 !== 0) {
    return `${what}: ${kernel === "dkv" ? "keys" : "rows"} must be a multiple of 4`;
  }
  const N4 = own / 4;
  // Phase 1: A quads of the owned side and B of the streamed side per thread.
  // Cost: [accumulators over 16 vec4, tile loads per product]; lexicographic.
  const better = (a: number[], b: number[] | undefined) =>
    !b || a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);
  let best1: [number, number, number] | null = null, cost1: number[] | undefined; // A, B, nA
  for (const A of divisors(N4)) {
    if (quads && quads[0] !== A) continue;
    const nA = N4 / A;
    if (NT % nA !== 0 || tile % (NT / nA) !== 0) continue;
    const B = tile / (NT / nA);
    // Per d4 step, B streamed-row loads (the splat side) + 4·A transposed loads for 4·A·B
    // products (twice each in the backward: S and dP).
    const cost = [Math.max(0, A * B * (kernel === "fwd" ? 1 : 2) - 16), (B + 4 * A) / (A * B)];
    if (better(cost, cost1)) [best1, cost1] = [[A, B, nA], cost];
  }
  let best2: [number, number, number] | null = null, cost2: number[] | undefined; // C, E, nC
  for (const C of divisors(N4)) {
    if (quads && quads[1] !== C) continue;
    const nC = N4 / C;
    if (NT % nC !== 0 || DH4 % (NT / nC) !== 0) continue;
    const E = DH4 / (NT / nC);
    const cost = [Math.max(0, 4 * C * E * (kernel === "dkv" ? 2 : 1) - 16), (C + E) / (C * E)];
    if (better(cost, cost2)) [best2, cost2] = [[C, E, nC], cost];
  }
  if (!best1 || !best2) {
    if (quads) return `${what}: quads [${quads}] give no thread layout`;
    const o = kernel === "dkv" ? "keys" : "rows", t = kernel === "dkv" ? "rows" : "keys";
    return `${what}: no thread layout (threads must be (a divisor of ${o}/4) × (a divisor of ` +
      `${t}) and also (a divisor of ${o}/4) × (a divisor of dh/4 = ${DH4}))`;
  }
  const [A, B, nA] = best1, [C, E, nC] = best2;
  const N4P = N4 % 2 === 0 ? N4 + 1 : N4; // odd vec4 per row of P / dS: conflict-free stores
  const KPW = Math.max(DH4P, N4P); // the forward's K tile rows, then P
  const ownT = 2 * dh * N4 * v4; // two owned blocks, transposed (the forward has one)
  let bytes: number, share = false;
  if (kernel === "fwd") {
    bytes = ownT / 2 + tile * KPW * v4 + tile * DH4 * v4 + 2 * (NT / nA) * N4P * 16;
  } else if (kernel === "dq") {
    const sep = ownT + 2 * tile * DH4P * v4 + tile * N4P * v4 + own * 4;
    const shared = ownT + tile * (DH4P + KPW) * v4 + own * 4;
    share = tiles.share ?? perSm(shared) > perSm(sep);
    bytes = share ? shared : sep;
  } else {
    bytes = ownT + 2 * tile * DH4P * v4 + 2 * tile * 4 + 2 * tile * N4P * v4;
  }
  return {
    kernel,
    tiles: { rows, keys, threads: NT, quads: [A, C], rowwise, prefetch, share },
    consts: {
      A,
      B,
      NA: nA,
      NB: NT / nA,
      C,
      E,
      NC: nC,
      NE: NT / nC,
      N4,
      N4P,
      KPW,
      VPW: share ? KPW : DH4P,
      SHARE: share,
      OWN: own,
      TILE: tile,
      DH: dh,
      DH4,
      DH4P,
      NT,
      NLD: Math.ceil(tile * DH4 / NT),
      NLA: Math.ceil(tile / NT),
    },
    bytes,
  };
}

/** The given tiles (checked), else the first default or fallback that fits `limit` bytes. */
export function pickLayout(
  kernel: Kernel,
  given: AttentionTiles | undefined,
  dh: number,
  f16: boolean,
  limit: number,
): AttentionLayout {
  const name = kernel === "fwd" ? "attentionForward" : "attentionBackward";
  if (given) {
    const l = attentionLayout(kernel, given, dh, f16);
    if (typeof l === "string") throw new Error(`${name}: ${l}`);
    if (l.bytes > limit) {
      throw new Error(
        `${name}: ${kernel} tiles need ${l.bytes} bytes of workgroup memory, the device allows ` +
          `${limit}; pass smaller rows/keys`,
      );
    }
    return l;
  }
  // Fallback that fits any dh: one quad of rows (keys) per thread, 4·g per streamed tile, where
  // g is the largest divisor of dh/4 up to 8; last, one thread on 4 rows × 4 keys (a few KB).
  const DH4 = dh / 4;
  const g = Math.max(...divisors(DH4).filter((d) => d <= 8));
  const fallback: AttentionTiles[] = [[32, 4 * g, 8 * g], [8, 4 * g, 2 * g], [4, 4, 1]].map((
    [own, tile, threads],
  ) => kernel === "dkv" ? { rows: tile, keys: own, threads } : { rows: own, keys: tile, threads });
  for (const t of [...ATTENTION_DEFAULTS[f16 ? "f16" : "f32"][kernel], ...fallback]) {
    const l = attentionLayout(kernel, t, dh, f16);
    if (typeof l !== "string" && l.bytes <= limit) return l;
  }
  throw new Error(`${name}: no tile size fits ${limit} bytes of workgroup memory at dh=${dh}`);
}
