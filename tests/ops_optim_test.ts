import * as ref from "./reference/optim.ts";
import { assertClose, kernels, testF16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer, Layout } from "../src/gpu/arena.ts";
import type { Kernels, Tensor } from "../src/gpu/kernels.ts";
import {
  adamwAmpStep,
  adamwHyper,
  adamwStep,
  AMP,
  ampState,
  clippedAdamw,
  gradNormForward,
  lossScaleUpdate,
  skipMask,
  skipMaskTensor,
  writeAdamwHyper,
} from "../src/ops/optim.ts";

/** A flat layout of ragged slots (padding between them stays zero). */
function layout(): Layout {
  const l = new Layout();
  l.add("w1", [37, 5]);
  l.add("b1", [13]);
  l.add("w2", [3, 3, 7]);
  l.add("scale", [1]);
  return l;
}

/** Random values in the slots of a flat layout, zero in the padding (f32-rounded). */
function flatRandom(l: Layout, rng: Rng, scale = 1): Float64Array {
  const a = new Float64Array(l.total);
  for (const s of l.slots) a.set(rng.normals(s.length, scale), s.offset);
  return a;
}

function upload(k: Kernels, l: Layout, data: Float64Array, label: string): FlatBuffer {
  const f = new FlatBuffer(k.device, l, label);
  k.write(f.all(), Float32Array.from(data));
  return f;
}

/** AdamW's float64 state (random parameters and EMA, zero moments), the same on the GPU, and the
 * step's gradient, norm and hyper-parameter buffers. */
function adamwSetup(k: Kernels, l: Layout, rng: Rng) {
  const st: ref.AdamwState = {
    p: flatRandom(l, rng),
    m: new Float64Array(l.total),
    v: new Float64Array(l.total),
    ema: flatRandom(l, rng),
  };
  return {
    st,
    P: upload(k, l, st.p, "params"),
    M: upload(k, l, st.m, "m"),
    V: upload(k, l, st.v, "v"),
    E: upload(k, l, st.ema, "ema"),
    G: new FlatBuffer(k.device, l, "grads"),
    norm: k.tensor([1], "norm"),
    hyper: adamwHyper(k),
  };
}

async function readF64(k: Kernels, t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await k.read(t));
}

const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);

// maxNorm relative to the gradient norm (~sqrt(288) ≈ 17): 1 clips every step; 1e4 does not
// (the coefficient is computed but is 1); 0 disables clipping.
// `skip`: a slot another optimizer owns (the mask leaves its params, moments and EMA alone).
const cases = [
  { name: "clipping active, fused EMA", maxNorm: 1, fused: true },
  { name: "clipping inactive, no EMA", maxNorm: 1e4, fused: false },
  { name: "clipping disabled, fused EMA", maxNorm: 0, fused: true },
  { name: "clipping active, fused EMA, slot w1 masked", maxNorm: 1, fused: true, skip: "w1" },
  { name: "no EMA, slot w2 masked", maxNorm: 1e4, fused: false, skip: "w2" },
  // clippedAdamw, the pair as the VQ-VAE and classifier trainers run it (norm first: a stale one
  // would not clip step 1).
  { name: "clippedAdamw: clipping active, no EMA", maxNorm: 1, fused: false, clipped: true },
];

for (const { name, maxNorm, fused, skip, clipped } of cases) {
  Deno.test(`adamw 3 steps: ${name}`, async () => {
    const k = await kernels();
    const rng = new Rng(TEST_SEED ^ (maxNorm * 7 + (fused ? 1 : 0)));
    const l = layout();
    const { st, P, M, V, E, G, norm, hyper } = adamwSetup(k, l, rng);
    const masked = skip ? l.get(skip) : undefined;
    const mask = skipMaskTensor(
      k,
      l.total,
      masked ? [[masked.offset, masked.offset + masked.length]] : [],
    );
    const step = clipped ? clippedAdamw(k, P.all(), G.all(), M.all(), V.all(), norm, hyper) : [
      ...gradNormForward(k, G.all(), norm),
      ...adamwStep(
        k,
        P.all(),
        G.all(),
        M.all(),
        V.all(),
        norm,
        hyper,
        fused ? E.all() : undefined,
        {
          skip: mask,
        },
      ),
    ];
    const base = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const errs: string[] = [];
    for (let s = 1; s <= 3; s++) {
      const grads = flatRandom(l, rng, 0.5 + s);
      k.write(G.all(), Float32Array.from(grads));
      const h = { ...base, step: s, maxNorm, emaDecay: 0.9 };
      writeAdamwHyper(k, hyper, h);
      const p0 = Float64Array.from(st.p), e0 = Float64Array.from(st.ema);
      const kept = { p: p0, m: Float64Array.from(st.m), v: Float64Array.from(st.v), ema: e0 };
      ref.adamwStep(st, grads, h);
      if (!fused) st.ema = Float64Array.from(e0); // adamw without ema leaves it alone
      if (masked) { // the masked slot keeps its values (its gradient still counts in the norm)
        const r = [masked.offset, masked.offset + masked.length] as const;
        for (const key of ["p", "m", "v", "ema"] as const) {
          st[key].set(kept[key].subarray(...r), r[0]);
        }
      }
      await k.run(step);
      const gn = await k.read(norm);
      assertClose(`${name} step ${s} grad norm`, gn, [ref.gradNorm(grads)]);
      const p = await readF64(k, P.all()), e = await readF64(k, E.all());
      const at = `${name} step ${s}`;
      const ep = assertClose(`${at} params`, p, st.p);
      const dp = assertClose(`${at} params − previous`, diff(p, p0), diff(st.p, p0));
      const em = assertClose(`${at} m`, await k.read(M.all()), st.m);
      const ev = assertClose(`${at} v`, await k.read(V.all()), st.v);
      const ee = assertClose(`${at} ema`, e, st.ema);
      const de = assertClose(`${at} ema − previous`, diff(e, e0), diff(st.ema, e0));
      errs.push(
        `step ${s}: p ${ep.toExponential(1)} Δp ${dp.toExponential(1)} m ${em.toExponential(1)} v ${
          ev.toExponential(1)
        } ema ${ee.toExponential(1)} Δema ${de.toExponential(1)}`,
      );
    }
    // The reference carried its own state through the 3 steps; the padding stayed zero.
    const p = await k.read(P.all()), e = await k.read(E.all());
    for (const s of l.slots) {
      const end = s.offset + s.length, next = Math.ceil(end / 64) * 64;
      for (let i = end; i < next; i++) {
        if (p[i] !== 0 || e[i] !== 0) throw new Error(`padding ${i} changed`);
      }
    }
    console.log(`  ${name}:\n    ${errs.join("\n    ")}`);
  });
}

Deno.test("skip mask bits", () => {
  const w = skipMask(70, [[1, 3], [31, 33], [64, 70]]);
  const want = [0b110 | (1 << 31), 0b1, 0b111111];
  if (w.length !== 3 || want.some((x, i) => w[i] !== x >>> 0)) {
    throw new Error(`mask ${[...w].map((x) => x.toString(2))}`);
  }
});

Deno.test("gradNorm: many partial sums, deterministic", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xabc);
  const n = 300_001;
  const g = rng.normals(n);
  const t = k.tensor([n]), out = k.tensor([1]);
  k.write(t, Float32Array.from(g));
  const ds = gradNormForward(k, t, out);
  await k.run(ds);
  const a = await k.read(out);
  await k.run(ds);
  const b = await k.read(out);
  const e = assertClose("gradNorm", a, [ref.gradNorm(g)]);
  if (!Object.is(a[0], b[0])) throw new Error(`gradNorm not deterministic: ${a[0]} vs ${b[0]}`);
  console.log(`  gradNorm: relative error ${e.toExponential(2)}`);
});

Deno.test("adamw + EMA on a 2D grid (> 65535 workgroups)", async () => {
  const k = await kernels();
  const n = 65535 * 256 + 1000; // 65539 workgroups of 256
  // New buffers are zero: only the gradient needs writing.
  const p = k.tensor([n]), g = k.tensor([n]), m = k.tensor([n]), v = k.tensor([n]);
  const ema = k.tensor([n]);
  k.write(g, new Float32Array(n).fill(0.5));
  const norm = k.tensor([1]);
  k.write(norm, Float32Array.of(1));
  const hyper = adamwHyper(k);
  const h = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1, step: 1 };
  writeAdamwHyper(k, hyper, { ...h, maxNorm: 0, emaDecay: 0.5 });
  const [d] = adamwStep(k, p, g, m, v, norm, hyper, ema);
  if (d.workgroups[1] < 2) throw new Error(`expected a 2D grid, got ${d.workgroups}`);
  await k.run([d]);
  const zero = () => Float64Array.of(0);
  const st: ref.AdamwState = { p: zero(), m: zero(), v: zero(), ema: zero() };
  ref.adamwStep(st, Float64Array.of(0.5), { ...h, maxNorm: 0, emaDecay: 0.5 });
  for (const [name, t, want] of [["p", p, st.p[0]], ["ema", ema, st.ema[0]]] as const) {
    const got = await k.read(t);
    for (let i = 0; i < n; i++) {
      if (Math.abs(got[i] - want) > 1e-6) {
        throw new Error(`${name}[${i}] = ${got[i]}, want ${want}`);
      }
    }
  }
});

/**
 * Mixed precision: the loss-scaled step against the float64 AdamW on the unscaled gradients, with
 * the scaler's bookkeeping. Steps: 1 good (S = 2^10), 2 overflow (an inf in the gradients: nothing
 * changes, S halves, Adam's step count stays), 3 and 4 good (interval 2: S doubles after 4), so
 * steps 3 and 4 use Adam steps 2 and 3 (bias corrections of PyTorch's per-parameter step count).
 */
await testF16("adamw with dynamic loss scaling: skip, halve, grow, f16 copy", async () => {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ 0xa3f);
  const l = layout();
  const { st, P, M, V, E, G, norm, hyper } = adamwSetup(k, l, rng);
  const P16 = new FlatBuffer(k.device, l, "params16", "f16");
  const amp = k.tensor([8], "amp");
  k.write(amp, ampState({ scale: 1024 }));
  const step = [
    ...gradNormForward(k, G.all(), norm),
    ...adamwAmpStep(k, P.all(), G.all(), M.all(), V.all(), E.all(), P16.all(), norm, amp, hyper),
    ...lossScaleUpdate(k, norm, amp, { interval: 2 }),
  ];
  const base = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
  // [S used, skipped, Adam step, S after, skipped total after]
  const plan = [[1024, false, 1, 1024, 0], [1024, true, 0, 512, 1], [512, false, 2, 512, 1], [
    512,
    false,
    3,
    1024,
    1,
  ]] as const;
  for (let s = 1; s <= plan.length; s++) {
    const [S, skip, adamStep, after, skippedAfter] = plan[s - 1];
    const grads = flatRandom(l, rng, 0.5 + s);
    const scaled = Float32Array.from(grads, (g) => g * S);
    if (skip) scaled[l.get("w2").offset + 5] = Infinity;
    k.write(G.all(), scaled);
    const h = { ...base, step: s, maxNorm: 3, emaDecay: 0.9 };
    writeAdamwHyper(k, hyper, h);
    const before = { p: await k.read(P.all()), m: await k.read(M.all()), e: await k.read(E.all()) };
    const p16Before = await k.read(P16.all());
    // The reference sees the f32 gradients the GPU unscales: scaled/S is exact (S a power of 2).
    if (!skip) ref.adamwStep(st, Float64Array.from(scaled, (g) => g / S), { ...h, step: adamStep });
    await k.run(step);
    const a = await k.read(amp);
    const at = `step ${s}`;
    if (a[AMP.scale] !== after || a[AMP.skipped] !== skippedAfter) {
      throw new Error(
        `${at}: scale ${a[AMP.scale]} skipped ${a[AMP.skipped]}, want ${after}, ${skippedAfter}`,
      );
    }
    if (a[AMP.lastSkipped] !== (skip ? 1 : 0) || a[AMP.lastScale] !== S) {
      throw new Error(`${at}: last skipped ${a[AMP.lastSkipped]}, last scale ${a[AMP.lastScale]}`);
    }
    const p = await k.read(P.all());
    if (skip) {
      const same = (x: Float32Array, y: Float32Array) => x.every((v, i) => Object.is(v, y[i]));
      if (!same(p, before.p) || !same(await k.read(M.all()), before.m)) {
        throw new Error(`${at}: a skipped step changed params or moments`);
      }
      if (!same(await k.read(E.all()), before.e) || !same(await k.read(P16.all()), p16Before)) {
        throw new Error(`${at}: a skipped step changed the EMA or the f16 copy`);
      }
      if (Number.isFinite(a[AMP.lastNorm])) throw new Error(`${at}: norm ${a[AMP.lastNorm]}`);
      continue;
    }
    assertClose(`${at} unscaled norm`, [a[AMP.lastNorm]], [
      ref.gradNorm(Float64Array.from(scaled, (g) => g / S)),
    ]);
    assertClose(`${at} params`, p, st.p);
    assertClose(`${at} params − previous`, diff(p, before.p), diff(st.p, before.p));
    assertClose(`${at} m`, await k.read(M.all()), st.m);
    assertClose(`${at} v`, await k.read(V.all()), st.v);
    assertClose(`${at} ema`, await k.read(E.all()), st.ema);
    const p16 = await k.read(P16.all()), want16 = new Float16Array(p);
    for (let i = 0; i < p.length; i++) {
      if (!Object.is(p16[i], want16[i])) {
        throw new Error(`${at}: params16[${i}] ${p16[i]} != f16(${p[i]})`);
      }
    }
  }
});
