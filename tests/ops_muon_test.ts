/**
 * Muon on the GPU (src/ops/muon.ts) against the float64 reference (tests/reference/muon.ts):
 * three steps over matrices that are tall (rows > cols: orthogonalised transposed), wide and
 * square, with the global-norm clip, weight decay and the EMA; and in mixed precision the loss
 * scale's unscaling, an overflow step that changes nothing, and the f16 weight copy.
 */
import * as ref from "./reference/muon.ts";
import { assertClose, kernels, testF16 } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer, Layout } from "../src/gpu/arena.ts";
import { gradNormForward } from "../src/ops/optim.ts";
import { AMP, ampState } from "../src/ops/optim.ts";
import { muonHyper, type MuonMatrix, muonStep, writeMuonHyper } from "../src/ops/muon.ts";

const SHAPES: [string, number, number][] = [["tall", 37, 13], ["wide", 11, 29], ["square", 16, 16]];

function layout(): Layout {
  const l = new Layout();
  for (const [name, r, c] of SHAPES) l.add(name, [r, c]);
  l.add("bias", [7]); // not Muon's: only its gradient counts (in the norm)
  return l;
}

const diff = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Float64Array.from({ length: a.length }, (_, i) => a[i] - b[i]);

async function checkMuon(f16: boolean) {
  const k = await kernels();
  const rng = new Rng(TEST_SEED ^ (f16 ? 0x3a11 : 0x3a10));
  const l = layout();
  const flat = (scale: number) => {
    const a = new Float64Array(l.total);
    for (const s of l.slots) a.set(rng.normals(s.length, scale), s.offset);
    return Float32Array.from(a);
  };
  const bufs = Object.fromEntries(
    ["params", "grads", "momentum", "ema"].map((n) => [n, new FlatBuffer(k.device, l, n)]),
  );
  const p0 = flat(0.3), e0 = flat(0.3), m0 = flat(0.01);
  k.write(bufs.params.all(), p0);
  k.write(bufs.ema.all(), e0);
  k.write(bufs.momentum.all(), m0);
  const p16 = f16 ? new FlatBuffer(k.device, l, "params16", "f16") : undefined;
  const matrices: MuonMatrix[] = SHAPES.map(([name, rows, cols]) => ({
    name,
    rows,
    cols,
    params: bufs.params.view(name),
    grads: bufs.grads.view(name),
    momentum: bufs.momentum.view(name),
    ema: bufs.ema.view(name),
    params16: p16?.view(name),
  }));
  const norm = k.tensor([1], "norm"), hyper = muonHyper(k);
  const amp = f16 ? k.tensor([8], "amp") : undefined;
  const S = 512;
  if (amp) k.write(amp, ampState({ scale: S }));
  const step = [
    ...gradNormForward(k, bufs.grads.all(), norm),
    ...muonStep(k, matrices, norm, hyper, amp),
  ];
  const st = {
    p: Float64Array.from(p0),
    m: Float64Array.from(m0),
    e: Float64Array.from(e0),
  };
  const errs: string[] = [];
  for (let s = 1; s <= 3; s++) {
    const g = flat(1 + s);
    const skip = f16 && s === 2;
    if (skip) g[l.get("wide").offset + 3] = Infinity;
    k.write(bufs.grads.all(), f16 ? g.map((v) => v * S) : g);
    const h = { lr: 0.05, momentum: 0.9, weightDecay: 0.1, maxNorm: 2, emaDecay: 0.8 };
    writeMuonHyper(k, hyper, h);
    const read = () =>
      Promise.all(
        [bufs.params, bufs.momentum, bufs.ema, p16].map((b) =>
          b ? k.read(b.all()) : new Float32Array()
        ),
      );
    const state = await read();
    const before = state[0];
    await k.run(step);
    const p = await k.read(bufs.params.all());
    if (skip) {
      const after = await read();
      if (after.some((a, j) => a.some((v, i) => !Object.is(v, state[j][i])))) {
        throw new Error(`step ${s}: a skipped step changed the weights, momentum, EMA or f16 copy`);
      }
      continue;
    }
    let sq = 0;
    for (const v of g) sq += v * v;
    const coef = Math.min(1, h.maxNorm / (Math.sqrt(sq) + 1e-6));
    for (const [name, rows, cols] of SHAPES) {
      const { offset, length } = l.get(name);
      const r = [offset, offset + length] as const;
      const pm = st.p.subarray(...r), mm = st.m.subarray(...r), em = st.e.subarray(...r);
      ref.muonStep(pm, mm, Float64Array.from(g.subarray(...r), (v) => v * coef), rows, cols, h);
      for (let i = 0; i < length; i++) em[i] = h.emaDecay * em[i] + (1 - h.emaDecay) * pm[i];
    }
    const at = `${f16 ? "f16 " : ""}step ${s}`;
    const worst = { p: 0, dp: 0, m: 0, e: 0 };
    for (const [name] of SHAPES) {
      const { offset, length } = l.get(name);
      const sub = (a: ArrayLike<number>) => Array.prototype.slice.call(a, offset, offset + length);
      const gotP = sub(p), wantP = sub(st.p);
      worst.p = Math.max(worst.p, assertClose(`${at} ${name} params`, gotP, wantP, 1e-5));
      worst.dp = Math.max(
        worst.dp,
        assertClose(
          `${at} ${name} update`,
          diff(gotP, sub(before)),
          diff(wantP, sub(before)),
          1e-3,
        ),
      );
      const m = sub(await k.read(bufs.momentum.all()));
      worst.m = Math.max(worst.m, assertClose(`${at} ${name} momentum`, m, sub(st.m), 1e-5));
      const e = sub(await k.read(bufs.ema.all()));
      worst.e = Math.max(worst.e, assertClose(`${at} ${name} ema`, e, sub(st.e), 1e-5));
    }
    if (p16) {
      const half = await k.read(p16.all()), want = new Float16Array(p);
      for (const [name] of SHAPES) {
        const { offset, length } = l.get(name);
        for (let i = offset; i < offset + length; i++) {
          if (!Object.is(half[i], want[i])) throw new Error(`${at}: params16[${i}] != f16(params)`);
        }
      }
    }
    const bias = l.get("bias");
    if (
      p.subarray(bias.offset, bias.offset + bias.length).some((v, i) =>
        v !== before[bias.offset + i]
      )
    ) {
      throw new Error(`${at}: a slot that is not Muon's changed`);
    }
    errs.push(
      `step ${s}: params ${worst.p.toExponential(1)}, update ${worst.dp.toExponential(1)}, ` +
        `momentum ${worst.m.toExponential(1)}, ema ${worst.e.toExponential(1)}`,
    );
  }
  if (amp) {
    const a = await k.read(amp);
    if (a[AMP.scale] !== S) throw new Error(`muon changed the loss scale: ${a[AMP.scale]}`);
  }
  console.log(`  muon${f16 ? " (mixed precision)" : ""}: ${errs.join("; ")}`);
}

Deno.test("muon 3 steps (tall, wide, square; clip, weight decay, EMA) match float64", () =>
  checkMuon(false));

await testF16(
  "muon 3 steps with a loss scale: unscaled, overflow skipped, f16 copy",
  () => checkMuon(true),
);
