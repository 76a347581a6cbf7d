/**
 * Multi-head self-attention (timm/DiT layout), forward and backward, flash-style: the T×T
 * probabilities are recomputed in the backward from the saved row logsumexps.
 *   qkv [B, T, 3·D], last axis (3, heads, dh): q = qkv[b,t,h·dh+j], k at D+…, v at 2·D+…
 *   out [B, T, D]: out[b,t,h·dh+j] = Σ_s softmax_s(q·k_s/√dh)·v_s[j]
 *   aux [2, B, heads, T] (`attentionAuxShape`), f32: aux[0] = natural logsumexp of each query
 *   row's scaled scores (forward); aux[1] = D_i = Σ_j dout·out per row (written by the dQ kernel,
 *   read by the dK/dV kernel).
 *
 * Three kernels, each a pair of small register-blocked matrix products per tile with the T×T
 * block passing through workgroup memory (see shaders/attention.wgsl): attn_fwd (query-major),
 * attn_bwd_dq (query-major, also D_i) and attn_bwd_dkv (key-major, dK and dV from one
 * recomputation of P). No atomics; every sum in a fixed order.
 *
 * f16: when qkv is an f16 tensor, out and dqkv must be f16 too and dout may be f16 or f32. Tiles
 * are stored in f16 and products run on vec4<f16>; each f16 accumulator takes at most `f16Chunk`
 * products before it is added into an f32 one; softmax statistics, D_i and every accumulation
 * across chunks are f32.
 */
import { type Dispatch, f32, type Kernels, type Tensor } from "../gpu/kernels.ts";
import template from "../../shaders/attention.wgsl" with { type: "text" };

/** Shape of the tensor `attentionForward` saves for `attentionBackward` (always f32). */
export function attentionAuxShape(B: number, T: number, _D: number, heads: number): number[] {
  return [2, B, heads, T];
}

/**
 * Block sizes of one kernel. attn_fwd and attn_bwd_dq: `rows` query rows per workgroup, `keys`
 * keys per tile of workgroup memory. attn_bwd_dkv: `keys` keys per workgroup, `rows` query rows
 * per tile. `threads` per workgroup. rows (fwd, dq) and keys (dkv) are multiples of 4.
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
}

/** Block sizes (tests force small ones to span several blocks with tiny shapes). */
export interface AttentionOptions {
  fwd?: AttentionTiles;
  dq?: AttentionTiles;
  dkv?: AttentionTiles;
  /** f16 only: products per f16 accumulator before it is added into f32 (default 16). */
  f16Chunk?: number;
}

/**
 * Default tiles, first that fits the head size and the device's workgroup memory wins. Update
 * from `deno run -A tasks/attention_bench.ts` (its last lines print these lists). Current: the
 * H200 sweep of gpu run 1 (DiT-S/2 and DiT-B/2 shapes).
 */
export const ATTENTION_DEFAULTS: Record<
  "f32" | "f16",
  Record<"fwd" | "dq" | "dkv", AttentionTiles[]>
> = {
  f32: {
    fwd: [{ rows: 64, keys: 32, threads: 128 }, { rows: 32, keys: 16, threads: 32 }],
    dq: [{ rows: 64, keys: 16, threads: 64 }, { rows: 32, keys: 32, threads: 64 }],
    dkv: [{ rows: 8, keys: 32, threads: 64 }, { rows: 32, keys: 32, threads: 128 }],
  },
  f16: {
    fwd: [{ rows: 32, keys: 16, threads: 32 }, { rows: 64, keys: 16, threads: 64 }],
    dq: [{ rows: 64, keys: 16, threads: 64 }, { rows: 32, keys: 32, threads: 64 }],
    dkv: [{ rows: 32, keys: 32, threads: 128 }, { rows: 16, keys: 32, threads: 64 }],
  },
};

// ---------------------------------------------------------------------------------------------
// Template expansion. The WGSL template uses
//   //#for x in EXPR … //#end      repeat the enclosed lines for x = 0 … EXPR−1
//   CODE //#for x in E1, y in E2   repeat one line over the product of the ranges
//   //#if EXPR … //#else … //#end  keep one branch
//   {EXPR}                         substitute the value (no spaces inside the braces)
// where EXPR is integer arithmetic (+ − * / % with / truncating, comparisons, && || !) over
// numbers, loop variables and the constants given.

type Val = number | string | boolean;

function evalExpr(src: string, env: Record<string, Val>): Val {
  const toks = src.match(/\d+|[A-Za-z_]\w*|&&|\|\||==|!=|<=|>=|[-+*/%()<>!]/g) ?? [];
  if (toks.join("") !== src.replace(/\s+/g, "")) throw new Error(`template: bad expression ${src}`);
  let at = 0;
  const num = (v: Val) => (typeof v === "boolean" ? (v ? 1 : 0) : Number(v));
  const binary: [string[], (a: Val, b: Val, op: string) => Val][] = [
    [["||"], (a, b) => num(a) !== 0 || num(b) !== 0],
    [["&&"], (a, b) => num(a) !== 0 && num(b) !== 0],
    [["==", "!="], (a, b, op) => (num(a) === num(b)) === (op === "==")],
    [["<", "<=", ">", ">="], (a, b, op) => {
      const x = num(a), y = num(b);
      return op === "<" ? x < y : op === "<=" ? x <= y : op === ">" ? x > y : x >= y;
    }],
    [["+", "-"], (a, b, op) => op === "+" ? num(a) + num(b) : num(a) - num(b)],
    [["*", "/", "%"], (a, b, op) => {
      const x = num(a), y = num(b);
      return op === "*" ? x * y : op === "/" ? Math.trunc(x / y) : x % y;
    }],
  ];
  const level = (l: number): Val => {
    if (l === binary.length) return unary();
    let v = level(l + 1);
    while (at < toks.length && binary[l][0].includes(toks[at])) {
      const op = toks[at++];
      v = binary[l][1](v, level(l + 1), op);
    }
    return v;
  };
  const unary = (): Val => {
    const t = toks[at++];
    if (t === "!") return num(unary()) === 0;
    if (t === "-") return -num(unary());
    if (t === "(") {
      const v = level(0);
      if (toks[at++] !== ")") throw new Error(`template: missing ) in ${src}`);
      return v;
    }
    if (/^\d+$/.test(t)) return Number(t);
    if (t in env) return env[t];
    throw new Error(`template: unknown name ${t} in ${src}`);
  };
  const v = level(0);
  if (at !== toks.length) throw new Error(`template: trailing tokens in ${src}`);
  return v;
}

const KNOWN_SUB = /\{([A-Za-z0-9_+\-*/%()<>=!&|]+)\}/g;

function substitute(line: string, env: Record<string, Val>): string {
  return line.replace(KNOWN_SUB, (all, e: string) => {
    const names = e.match(/[A-Za-z_]\w*/g) ?? [];
    if (!names.every((n) => n in env)) return all;
    const v = evalExpr(e, env);
    return String(typeof v === "boolean" ? (v ? 1 : 0) : v);
  });
}

/** Expand the directives and `{EXPR}` substitutions of a WGSL template (see above). */
export function expandTemplate(src: string, consts: Record<string, Val>): string {
  const lines = src.split("\n");
  const out: string[] = [];
  const ranges = (spec: string, env: Record<string, Val>): [string, number][] =>
    spec.split(",").map((part) => {
      const m = part.trim().match(/^(\w+) in (.+)$/);
      if (!m) throw new Error(`template: bad loop "${part}"`);
      return [m[1], Number(evalExpr(m[2], env))];
    });
  const product = (rs: [string, number][], env: Record<string, Val>): Record<string, Val>[] => {
    let envs = [env];
    for (const [n, count] of rs) {
      envs = envs.flatMap((e) => Array.from({ length: count }, (_, v) => ({ ...e, [n]: v })));
    }
    return envs;
  };
  // Returns the index of the line that ended the block (//#end or //#else), or lines.length.
  const block = (start: number, env: Record<string, Val>, emit: boolean): number => {
    let j = start;
    while (j < lines.length) {
      const line = lines[j];
      const t = line.trim();
      let m: RegExpMatchArray | null;
      if (t === "//#end" || t === "//#else") return j;
      if ((m = t.match(/^\/\/#for (.+)$/))) {
        let end = j + 1;
        const envs = emit ? product(ranges(m[1], env), env) : [];
        if (envs.length === 0) end = block(j + 1, env, false);
        for (const e of envs) end = block(j + 1, e, true);
        j = end + 1;
      } else if ((m = t.match(/^\/\/#if (.+)$/))) {
        const cond = emit && Number(evalExpr(m[1], env)) !== 0;
        let end = block(j + 1, env, cond);
        if (lines[end]?.trim() === "//#else") end = block(end + 1, env, emit && !cond);
        j = end + 1;
      } else if ((m = line.match(/^(.*?)\s*\/\/#for (.+)$/))) {
        if (emit) {
          for (const e of product(ranges(m[2], env), env)) out.push(substitute(m[1], e));
        }
        j++;
      } else {
        if (emit) out.push(substitute(line, env));
        j++;
      }
    }
    return j;
  };
  const i = block(0, consts, true);
  if (i < lines.length) throw new Error(`template: unmatched ${lines[i].trim()} at line ${i + 1}`);
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Thread layouts.

/** One kernel's block sizes and the thread layout of its two phases. */
export interface AttentionLayout {
  kernel: "fwd" | "dq" | "dkv";
  tiles: AttentionTiles;
  /** Template constants (phase layouts, sizes). */
  consts: Record<string, number>;
  /** Workgroup memory in bytes. */
  bytes: number;
}

const divisors = (n: number) =>
  Array.from({ length: n }, (_, i) => i + 1).filter((d) => n % d === 0);

/**
 * Thread layout of a kernel for head size dh, or an error message. Phase 1 (the score block
 * S = Q·Kᵀ, and dP = dO·Vᵀ in the backward): each thread owns a block of A quads of the owned side
 * × B of the streamed side (fwd/dq: 4·A query rows × B keys; dkv: 4·A keys × B query rows).
 * Phase 2 (the product with P or dS): 4·C owned rows × E vec4 slots of dh. Among the splits that
 * keep each phase's f32 accumulators within 64 registers (if any do), the one that loads the
 * fewest tile values per product wins.
 */
export function attentionLayout(
  kernel: "fwd" | "dq" | "dkv",
  tiles: AttentionTiles,
  dh: number,
  f16: boolean,
): AttentionLayout | string {
  const { rows, keys, threads: NT, quads } = tiles;
  const DH4 = dh / 4;
  const what = `${kernel} tiles rows=${rows} keys=${keys} threads=${NT} at dh=${dh}`;
  if (![rows, keys, NT].every((v) => Number.isInteger(v) && v > 0)) {
    return `${what}: sizes must be positive integers`;
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
  const eb = f16 ? 2 : 4, v4 = 4 * eb, DH4P = DH4 | 1;
  const nB = NT / nA;
  let bytes: number;
  if (kernel === "fwd") {
    bytes = dh * N4 * v4 + keys * DH4P * v4 + keys * DH4 * v4 + keys * N4 * v4 + 2 * nB * N4 * 16;
  } else if (kernel === "dq") {
    bytes = 2 * dh * N4 * v4 + 2 * keys * DH4P * v4 + keys * N4 * v4 + rows * 4;
  } else {
    bytes = 2 * dh * N4 * v4 + 2 * rows * DH4P * v4 + 2 * rows * 4 + 2 * rows * N4 * v4;
  }
  return {
    kernel,
    tiles: { rows, keys, threads: NT, quads: [A, C] },
    consts: { A, B, NA: nA, NB: nB, C, E, NC: nC, NE: NT / nC, N4, DH4, DH4P, DH: dh },
    bytes,
  };
}

function pickLayout(
  kernel: "fwd" | "dq" | "dkv",
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
  // g is the largest divisor of dh/4 up to 8.
  const DH4 = dh / 4;
  const g = Math.max(...divisors(DH4).filter((d) => d <= 8));
  const fallback: AttentionTiles[] = [[32, 8], [8, 2]].map(([own, n]) =>
    kernel === "dkv"
      ? { rows: 4 * g, keys: own, threads: n * g }
      : { rows: own, keys: 4 * g, threads: n * g }
  );
  for (const t of [...ATTENTION_DEFAULTS[f16 ? "f16" : "f32"][kernel], ...fallback]) {
    const l = attentionLayout(kernel, t, dh, f16);
    if (typeof l !== "string" && l.bytes <= limit) return l;
  }
  throw new Error(`${name}: no tile size fits ${limit} bytes of workgroup memory at dh=${dh}`);
}

// ---------------------------------------------------------------------------------------------

const codeCache = new Map<string, string>();
function shader(l: AttentionLayout, f16: boolean, doutF16: boolean, chunk: number): string {
  const key = JSON.stringify([l.kernel, l.tiles, l.consts, f16, doutF16, chunk]);
  let c = codeCache.get(key);
  if (!c) {
    c = expandTemplate(template, {
      ...l.consts,
      KERNEL: ["fwd", "dq", "dkv"].indexOf(l.kernel),
      F16: f16,
      ET: f16 ? "f16" : "f32",
      OT: doutF16 ? "f16" : "f32",
      NT: l.tiles.threads,
      ROWS: l.tiles.rows,
      KEYS: l.tiles.keys,
      // f16 accumulators: flush every FLD d4 steps (phase 1) and every FLK keys/rows (phase 2).
      FLD: Math.max(1, Math.floor(chunk / 4)),
      FLK: chunk,
      ACC: f16 ? "g" : "o",
      ACV: f16 ? "y" : "u",
    });
    codeCache.set(key, c);
  }
  return c;
}

interface Setup {
  B: number;
  T: number;
  D: number;
  dh: number;
  f16: boolean;
  chunk: number;
}

function setup(
  name: string,
  qkv: Tensor,
  aux: Tensor,
  heads: number,
  o: AttentionOptions,
): Setup {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new Error(`${name}: qkv must be [B, T, 3·D], got [${qkv.shape}]`);
  }
  const [B, T] = qkv.shape, D = qkv.shape[2] / 3;
  if (!Number.isInteger(heads) || heads < 1 || D % heads !== 0) {
    throw new Error(`${name}: D=${D} is not divisible by heads=${heads}`);
  }
  const dh = D / heads;
  if (dh % 4 !== 0) throw new Error(`${name}: head dim dh=${dh} must be a multiple of 4`);
  const auxLen = attentionAuxShape(B, T, D, heads).reduce((a, b) => a * b, 1);
  if (aux.length !== auxLen || aux.dtype === "f16") {
    throw new Error(`${name}: aux must be an f32 tensor [${attentionAuxShape(B, T, D, heads)}]`);
  }
  const chunk = o.f16Chunk ?? 16;
  if (!Number.isInteger(chunk) || chunk < 1) {
    throw new Error(`${name}: f16Chunk must be a positive integer, got ${chunk}`);
  }
  return { B, T, D, dh, f16: qkv.dtype === "f16", chunk };
}

function checkTensor(name: string, t: Tensor, shape: number[], what: string, f16: boolean) {
  if (t.length !== shape.reduce((a, b) => a * b, 1)) {
    throw new Error(`${name}: ${what} must be [${shape}], got [${t.shape}]`);
  }
  if ((t.dtype === "f16") !== f16) {
    throw new Error(`${name}: ${what} must be ${f16 ? "f16" : "f32"} like qkv`);
  }
}

function uniform(k: Kernels, s: Setup, heads: number, blockRows: number) {
  const nblk = Math.ceil(s.T / blockRows), total = s.B * heads * nblk;
  const u = k.uniform([
    s.T,
    heads,
    s.D / 4,
    nblk,
    total,
    s.B * heads * s.T,
    f32(Math.LOG2E / Math.sqrt(s.dh)),
    f32(1 / Math.sqrt(s.dh)),
  ]);
  return { u, total };
}

const wgLimit = (k: Kernels) => k.device.limits.maxComputeWorkgroupStorageSize;

/** out [B, T, D] = attention(qkv [B, T, 3·D]); aux [2, B, heads, T] saved for the backward. */
export function attentionForward(
  k: Kernels,
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  heads: number,
  opts: AttentionOptions = {},
): Dispatch[] {
  const name = "attentionForward";
  const s = setup(name, qkv, aux, heads, opts);
  checkTensor(name, out, [s.B, s.T, s.D], "out", s.f16);
  const l = pickLayout("fwd", opts.fwd, s.dh, s.f16, wgLimit(k));
  const { u, total } = uniform(k, s, heads, l.tiles.rows);
  const code = shader(l, s.f16, false, s.chunk);
  return [k.dispatch(code, "attn_fwd", [qkv, out, aux, u], total)];
}

/**
 * dqkv [B, T, 3·D] (every element written) from dout [B, T, D], the forward's qkv, out and aux.
 * Two dispatches: dQ (also stores D_i = Σ dout·out in aux[1]), then dK and dV together.
 */
export function attentionBackward(
  k: Kernels,
  qkv: Tensor,
  out: Tensor,
  aux: Tensor,
  dout: Tensor,
  dqkv: Tensor,
  heads: number,
  opts: AttentionOptions = {},
): Dispatch[] {
  const name = "attentionBackward";
  const s = setup(name, qkv, aux, heads, opts);
  checkTensor(name, out, [s.B, s.T, s.D], "out", s.f16);
  checkTensor(name, dqkv, [s.B, s.T, 3 * s.D], "dqkv", s.f16);
  const doutF16 = dout.dtype === "f16";
  checkTensor(name, dout, [s.B, s.T, s.D], "dout", doutF16);
  if (doutF16 && !s.f16) throw new Error(`${name}: an f16 dout needs f16 qkv, out and dqkv`);
  const lq = pickLayout("dq", opts.dq, s.dh, s.f16, wgLimit(k));
  const lk = pickLayout("dkv", opts.dkv, s.dh, s.f16, wgLimit(k));
  const uq = uniform(k, s, heads, lq.tiles.rows), uk = uniform(k, s, heads, lk.tiles.keys);
  return [
    k.dispatch(
      shader(lq, s.f16, doutF16, s.chunk),
      "attn_bwd_dq",
      [qkv, dqkv, aux, uq.u, dout, out],
      uq.total,
    ),
    k.dispatch(
      shader(lk, s.f16, doutF16, s.chunk),
      "attn_bwd_dkv",
      [qkv, dqkv, aux, uk.u, dout],
      uk.total,
    ),
  ];
}
