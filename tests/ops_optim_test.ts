import * as ref from "./reference/optim.ts";
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer, Layout } from "../src/gpu/arena.ts";
import type { Kernels, Tensor } from "../src/gpu/kernels.ts";
import { adamwHyper, adamwStep, gradNormForward, writeAdamwHyper } from "../src/ops/optim.ts";

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

async function readF64(k: Kernels, t: Tensor): Promise<Float64Array> {
  return Float64Array.from(await k.read(t));
}

const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);

// maxNorm relative to the gradient norm (~sqrt(288) ≈ 17): 1 clips every step; 1e4 does not
// (the coefficient is computed but is 1); 0 disables clipping.
const cases = [
  { name: "clipping active, fused EMA", maxNorm: 1, fused: true },
  { name: "clipping inactive, no EMA", maxNorm: 1e4, fused: false },
  { name: "clipping disabled, fused EMA", maxNorm: 0, fused: true },
];

for (const { name, maxNorm, fused } of cases) {
  Deno.test(`adamw 3 steps: ${name}`, async () => {
    const k = await kernels();
    const rng = new Rng(TEST_SEED ^ (maxNorm * 7 + (fused ? 1 : 0)));
    const l = layout();
    const st: ref.AdamwState = {
      p: flatRandom(l, rng),
      m: new Float64Array(l.total),
      v: new Float64Array(l.total),
      ema: flatRandom(l, rng),
    };
    const P = upload(k, l, st.p, "params"), M = upload(k, l, st.m, "m");
    const V = upload(k, l, st.v, "v"), E = upload(k, l, st.ema, "ema");
    const G = new FlatBuffer(k.device, l, "grads");
    const norm = k.tensor([1], "norm");
    const hyper = adamwHyper(k);
    const step = [
      ...gradNormForward(k, G.all(), norm),
      ...adamwStep(k, P.all(), G.all(), M.all(), V.all(), norm, hyper, fused ? E.all() : undefined),
    ];
    const base = { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.1 };
    const errs: string[] = [];
    for (let s = 1; s <= 3; s++) {
      const grads = flatRandom(l, rng, 0.5 + s);
      k.write(G.all(), Float32Array.from(grads));
      const h = { ...base, step: s, maxNorm, emaDecay: 0.9 };
      writeAdamwHyper(k, hyper, h);
      const p0 = Float64Array.from(st.p), e0 = Float64Array.from(st.ema);
      ref.adamwStep(st, grads, h);
      if (!fused) st.ema = Float64Array.from(e0); // adamw without ema leaves it alone
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
