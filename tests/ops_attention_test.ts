import * as ref from "./reference/attention.ts";
import { assertClose, checkOp, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import {
  attentionAuxShape,
  attentionBackward,
  attentionForward,
  attentionLayout,
  type AttentionOptions,
} from "../src/ops/attention.ts";
import { expandTemplate } from "../src/ops/attention_template.ts";

const label = (o: AttentionOptions) =>
  (["fwd", "dq", "dkv"] as const).filter((n) => o[n]).map((n) => {
    const t = o[n]!;
    const flags = [
      t.quads ? ` q${t.quads}` : "",
      t.rowwise ? " rowwise" : "",
      t.prefetch !== undefined ? ` pf ${t.prefetch}` : "",
      t.share !== undefined ? ` share ${t.share}` : "",
      t.chunk ? ` c${t.chunk}` : "",
    ];
    return ` ${n} ${t.rows}/${t.keys}/${t.threads}${flags.join("")}`;
  }).join("") + (o.f16Chunk ? ` chunk ${o.f16Chunk}` : "");

function attnCase(B: number, T: number, heads: number, dh: number, opts: AttentionOptions = {}) {
  const D = heads * dh;
  return checkOp({
    name: `attention B${B} T${T} heads${heads} dh${dh}${label(opts)}`,
    inputs: { qkv: [B, T, 3 * D] },
    scale: { qkv: 1.5 },
    outputs: { out: [B, T, D] },
    ref: ({ qkv }) => ({ out: ref.attention(qkv, B, T, D, heads) }),
    refBackward: ({ qkv }, { out }) => ({
      qkv: ref.attentionBackward(qkv, out, B, T, D, heads),
    }),
    gpu: (k, t) => {
      t.aux = k.tensor(attentionAuxShape(B, T, D, heads), "aux");
      k.fill(t.aux, NaN);
      return attentionForward(k, t.qkv, t.out, t.aux, heads, opts);
    },
    gpuBackward: (k, t) => attentionBackward(k, t.qkv, t.out, t.aux, t.dout, t.dqkv, heads, opts),
  });
}

// Ragged T spanning several row blocks and key/row tiles; odd head counts; dh 4..32. Each case
// names the kernels' tiles (rows/keys/threads, quads per thread in the two phases, code-shape
// flags) so that every path runs: row-wise and register-blocked forward and dQ, several quads or
// columns per thread, several load rounds, prefetching or not, dS in V's buffer or its own, a
// last (tail) tile shorter than the others and not a multiple of the threads sharing it, a single
// tail tile (T < tile), owned blocks with rows or keys past T (whole threads idle). Small tiles
// also keep llvmpipe's compile time down. The f32 defaults are row-wise fwd and dq.
Deno.test("attention T=9 dh=4 default tiles", () => attnCase(2, 9, 3, 4));
Deno.test("attention T=37 dh=8 small tiles", () =>
  attnCase(1, 37, 3, 8, {
    fwd: { rows: 8, keys: 6, threads: 4 },
    dq: { rows: 8, keys: 5, threads: 2, share: false },
    dkv: { rows: 6, keys: 8, threads: 4, prefetch: false },
  }));
Deno.test("attention T=23 dh=8 row-wise with prefetch", () =>
  attnCase(2, 23, 1, 8, {
    fwd: { rows: 8, keys: 5, threads: 8, rowwise: true, prefetch: true },
    dq: { rows: 4, keys: 7, threads: 4, rowwise: true, prefetch: true },
    dkv: { rows: 4, keys: 4, threads: 1 }, // the last-resort fallback
  }));
Deno.test("attention T=37 dh=16 two quads per thread", () =>
  attnCase(2, 37, 1, 16, {
    fwd: { rows: 16, keys: 8, threads: 8, quads: [2, 2] },
    dq: { rows: 16, keys: 12, threads: 8, quads: [2, 1] },
    dkv: { rows: 10, keys: 16, threads: 8, quads: [1, 2] },
  }));
Deno.test("attention T=20 dh=12 odd dh/4", () =>
  attnCase(1, 20, 2, 12, {
    fwd: { rows: 8, keys: 6, threads: 6, prefetch: false },
    dq: { rows: 12, keys: 9, threads: 9, prefetch: false, share: false },
    dkv: { rows: 7, keys: 12, threads: 3 },
  }));
Deno.test("attention T=70 dh=4 default tiles", () => attnCase(1, 70, 1, 4));
Deno.test("attention T=48 dh=8 default tiles, no tail tile", () => attnCase(1, 48, 2, 8));
Deno.test("attention T=41 dh=32 default tiles", () => attnCase(1, 41, 1, 32));
// The tiny preset's real head size with the default tiles (several key tiles): the unrolled
// dh=64 code takes llvmpipe minutes to compile on a cold shader cache, so it is opt-in.
Deno.test({
  name: "attention T=49 dh=64 (FLOWGPU_SLOW_TESTS=1)",
  ignore: !Deno.env.get("FLOWGPU_SLOW_TESTS"),
  fn: () => attnCase(1, 49, 2, 64),
});

// ---- f16 variants ---------------------------------------------------------------------------

const hasF16 = (await kernels()).gpu.features.has("shader-f16");
const f16 = (x: Float64Array) => Float64Array.from(new Float16Array(x));

/**
 * f16 qkv/out/dqkv (dout f16 or f32) against the float64 reference computed from the same
 * f16-rounded inputs. Error budget, u = 2^-11 (f16's unit roundoff), L = the largest chunk in
 * effect (`f16Chunk`, else each kernel's tile `chunk`, else 16): every f16
 * accumulator sums at most L products before joining an f32 sum, so it contributes at most
 * γ_L ≈ L·u of the magnitudes it sums (the score dots over dh, the P·V / dS·K / dS·Q / P·dO
 * products over keys or rows); P, dS and the outputs are rounded to f16 once each (≤ u). The
 * magnitudes summed stay within twice max|result| at these sizes (unit-variance inputs, dh ≤ 16),
 * hence tol = 2·(L + 4)·u relative to max|ref|: 2.0% at L = 16, 0.8% at L = 4 (llvmpipe measures
 * 0.07–0.2%, also at dh = 64). A dropped f16 chunk, tile or row moves the results by tens of percent.
 */
async function f16Case(
  B: number,
  T: number,
  heads: number,
  dh: number,
  doutF16: boolean,
  opts: AttentionOptions = {},
) {
  const k = await kernels();
  const name = `attention f16 B${B} T${T} heads${heads} dh${dh} dout ${doutF16 ? "f16" : "f32"}${
    label(opts)
  }`;
  let h = 2166136261;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), 16777619);
  const rng = new Rng(TEST_SEED ^ (h >>> 0));
  const chunks = (["fwd", "dq", "dkv"] as const).map((n) => opts[n]?.chunk ?? 16);
  const D = heads * dh, L = opts.f16Chunk ?? Math.max(...chunks), tol = 2 * (L + 4) * 2 ** -11;
  const x = f16(rng.normals(B * T * 3 * D));
  const dy = doutF16 ? f16(rng.normals(B * T * D)) : rng.normals(B * T * D);
  const qkv = k.tensor([B, T, 3 * D], "qkv", "f16");
  const out = k.tensor([B, T, D], "out", "f16");
  const aux = k.tensor(attentionAuxShape(B, T, D, heads), "aux");
  const dout = k.tensor([B, T, D], "dout", doutF16 ? "f16" : undefined);
  const dqkv = k.tensor([B, T, 3 * D], "dqkv", "f16");
  k.write(qkv, new Float16Array(x));
  k.write(dout, doutF16 ? new Float16Array(dy) : Float32Array.from(dy));
  for (const t of [out, aux, dqkv]) k.fill(t, NaN);
  await k.run([
    ...attentionForward(k, qkv, out, aux, heads, opts),
    ...attentionBackward(k, qkv, out, aux, dout, dqkv, heads, opts),
  ]);
  const eo = assertClose(`${name} out`, await k.read(out), ref.attention(x, B, T, D, heads), tol);
  const want = ref.attentionBackward(x, dy, B, T, D, heads);
  const ed = assertClose(`${name} dqkv`, await k.read(dqkv), want, tol);
  console.log(`  ${name}: relative error out ${eo.toExponential(2)}, dqkv ${ed.toExponential(2)}`);
}

Deno.test({
  name: "attention f16 T=37 dh=16 small tiles, chunk 4",
  ignore: !hasF16,
  fn: () =>
    f16Case(2, 37, 2, 16, true, {
      fwd: { rows: 8, keys: 10, threads: 4 },
      dq: { rows: 16, keys: 8, threads: 8, quads: [2, 2] },
      dkv: { rows: 10, keys: 8, threads: 4 },
      f16Chunk: 4,
    }),
});
Deno.test({
  name: "attention f16 T=21 dh=8 dout f32, chunk 4",
  ignore: !hasF16,
  fn: () =>
    f16Case(1, 21, 3, 8, false, {
      fwd: { rows: 12, keys: 8, threads: 6, prefetch: false },
      dq: { rows: 8, keys: 8, threads: 4, share: false },
      dkv: { rows: 8, keys: 12, threads: 6 },
      f16Chunk: 4,
    }),
});
Deno.test({
  name: "attention f16 T=26 dh=12 chunks per kernel",
  ignore: !hasF16,
  fn: () =>
    f16Case(1, 26, 2, 12, true, {
      fwd: { rows: 8, keys: 9, threads: 6, chunk: 8 },
      dq: { rows: 12, keys: 6, threads: 9, chunk: 4, prefetch: false },
      dkv: { rows: 9, keys: 8, threads: 6, chunk: 8 },
    }),
});
Deno.test({
  name: "attention f16 T=40 dh=8 default tiles and chunk",
  ignore: !hasF16,
  fn: () => f16Case(1, 40, 2, 8, true),
});
Deno.test({
  name: "attention f16 T=49 dh=64 default tiles (FLOWGPU_SLOW_TESTS=1)",
  ignore: !hasF16 || !Deno.env.get("FLOWGPU_SLOW_TESTS"),
  fn: () => f16Case(1, 49, 2, 64, true),
});

// ---- errors and the template ----------------------------------------------------------------

Deno.test("attention rejects dh not a multiple of 4", async () => {
  const k = await kernels();
  const qkv = k.tensor([1, 4, 18]), out = k.tensor([1, 4, 6]);
  const aux = k.tensor(attentionAuxShape(1, 4, 6, 1));
  let msg = "";
  try {
    attentionForward(k, qkv, out, aux, 1);
  } catch (e) {
    msg = (e as Error).message;
  }
  if (!msg.includes("multiple of 4")) throw new Error(`expected a dh error, got "${msg}"`);
});

Deno.test("attention rejects tiles with no thread layout and mixed dtypes", async () => {
  const k = await kernels();
  const msg = attentionLayout("fwd", { rows: 8, keys: 5, threads: 4 }, 8, false);
  if (typeof msg !== "string" || !msg.includes("no thread layout")) {
    throw new Error(`expected a layout error, got ${JSON.stringify(msg)}`);
  }
  const row = { rows: 8, keys: 4, threads: 8, rowwise: true };
  for (
    const [kernel, tiles, f16, want] of [
      ["dq", { ...row, threads: 4 }, false, "threads = rows"],
      ["fwd", row, true, "f32 only"],
      ["dkv", row, false, "fwd and dq only"],
    ] as const
  ) {
    const m = attentionLayout(kernel, tiles, 8, f16);
    if (typeof m !== "string" || !m.includes(want)) {
      throw new Error(`expected "${want}", got ${JSON.stringify(m)}`);
    }
  }
  if (!hasF16) return;
  const qkv = k.tensor([1, 4, 24], "qkv", "f16"), out = k.tensor([1, 4, 8]);
  const aux = k.tensor(attentionAuxShape(1, 4, 8, 2));
  let err = "";
  try {
    attentionForward(k, qkv, out, aux, 2);
  } catch (e) {
    err = (e as Error).message;
  }
  if (!err.includes("out must be f16")) throw new Error(`expected a dtype error, got "${err}"`);
});

Deno.test("attention template expansion", () => {
  const src = [
    "a{n*2} //#for i in 2, j in N",
    "//#for i in 2",
    "//#if i == 1 && !F",
    "x{i}_{N-i} { y; }",
    "//#else",
    "z{S}",
    "//#end",
    "//#end",
  ].join("\n");
  const got = expandTemplate(src, { N: 3, F: false, S: "s", n: 5 });
  const want = "a10\na10\na10\na10\na10\na10\nzs\nx1_2 { y; }";
  if (got !== want) throw new Error(`expanded to ${JSON.stringify(got)}`);
  // //#let binds for the rest of its block; //#def bodies expand with the bindings at //#use.
  const src2 = [
    "//#def M",
    "m{K*2}",
    "//#enddef",
    "//#for i in 2",
    "//#let K = i + N",
    "//#use M",
    "//#end",
    "k{N}",
  ].join("\n");
  const got2 = expandTemplate(src2, { N: 3 });
  if (got2 !== "m6\nm8\nk3") throw new Error(`expanded to ${JSON.stringify(got2)}`);
});
