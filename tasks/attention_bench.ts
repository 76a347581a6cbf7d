/**
 * Attention timing at the DiT shapes (batch 128, dh = 64): DiT-S/2 28×28 (T = 196, 6 heads) and
 * DiT-B/2 32×32 (T = 256, 12 heads).
 *
 *   deno run -A tasks/attention_bench.ts [--shapes=S,B] [--no-sweep] [--ms=50]
 *
 * After 0.5 s of warm-up work (an idle GPU starts at low clocks):
 * (1) Per shape: the previous kernels (one thread per row, backward in three dispatches; kept in
 *     this file only for the comparison) against the current defaults in f32, f16 with f16 dout,
 *     and f16 with f32 dout; plus the largest difference of the current outputs from the
 *     previous ones (f32) and of f16 from f32, over the first two images.
 * (2) Sweep of tile settings per kernel and precision at both shapes (register-blocked and
 *     row-wise, prefetch on/off, f16 chunk), the best f32/f16 totals against the previous
 *     kernels, then the `ATTENTION_DEFAULTS` (src/ops/attention_layout.ts) the measurements suggest,
 *     ready to paste. The sweep stops adding cases after 105 s (the whole run stays under 2 min).
 * Each figure: the dispatches encoded back to back in one compute pass for >= 50 ms (sweep: 30),
 * GPU timestamps (else wall clock up to onSubmittedWorkDone), median of 3 such batches, per call.
 * TFLOP/s counts 4·B·H·T²·dh for the forward and 10·B·H·T²·dh for the backward (FlashAttention's
 * convention: five T×T×dh products, P recomputed not counted).
 */
import { describeGpu, getGpu } from "../src/gpu/device.ts";
import { type Dispatch, Kernels } from "../src/gpu/kernels.ts";
import { attentionAuxShape, attentionBackward, attentionForward } from "../src/ops/attention.ts";
import { Timer } from "./bench_timing.ts";
import {
  type Bufs,
  diff,
  fmt,
  pad,
  random,
  SHAPES,
  tensor,
  time as timeMs,
} from "./attention_cases.ts";
import { oldAttention } from "./attention_previous.ts";
import { tileSweep } from "./attention_sweep.ts";

const kv: Record<string, string> = Object.fromEntries(
  Deno.args.filter((a) => a.includes("=")).map((a) => a.replace(/^--/, "").split("=", 2)),
);
const noSweep = Deno.args.includes("--no-sweep");
const minMs = Number(kv.ms ?? 50);
const sweepMs = Math.min(minMs, 30); // shorter batches in the sweep (many cases, 2-minute budget)
const shapes = (kv.shapes ?? "S,B").split(",").map((s) => {
  if (!SHAPES[s]) throw new Error(`--shapes: unknown shape ${s} (S, B or t)`);
  return s;
});
const start = performance.now();
const BUDGET_S = 105; // the sweep stops adding cases past this, to end within 2 minutes

const gpu = await getGpu();
const k = new Kernels(gpu);
const hasF16 = gpu.features.has("shader-f16");
const stamps = gpu.features.has("timestamp-query");
const wgLimit = k.device.limits.maxComputeWorkgroupStorageSize;
const timer = new Timer(k);
console.log(
  `# ${describeGpu(gpu)}; workgroup memory ${wgLimit} B; shader-f16 ${hasF16}; ` +
    `${stamps ? "timestamp queries" : "wall clock"}`,
);

/** Milliseconds per call of `ds` (median of 3 batches of >= `ms` each). */
const time = (ds: Dispatch[], ms = minMs) => timeMs(k, timer, ds, ms);

/**
 * Keep the GPU busy for >= 0.5 s before the first timing: an idle GPU starts at low clocks,
 * which inflated the first measured figures of a run.
 */
async function warmUp(b: Bufs, H: number) {
  const ds = [
    ...attentionForward(k, b.qkv, b.out, b.aux, H),
    ...attentionBackward(k, b.qkv, b.out, b.aux, b.dout, b.dqkv, H),
  ];
  const t0 = performance.now();
  let reps = 1;
  while (performance.now() - t0 < 500) {
    await timer.passes([ds], reps);
    reps = Math.min(reps * 2, 64);
  }
}

// ---- (1) previous vs current -----------------------------------------------------------------

const made: Record<string, Record<string, Bufs>> = {};
const oldSums = { fwd: 0, bwd: 0 }; // the previous kernels, summed over the shapes
const flops = (s: { B: number; T: number; H: number; dh: number }) => s.B * s.H * s.T * s.T * s.dh;

console.log(
  `\n${pad("shape", 14)} ${pad("variant", 22)} ${"fwd ms".padStart(8)} ${"TFLOP/s".padStart(8)} ` +
    `${"bwd ms".padStart(8)} ${"TFLOP/s".padStart(8)} ${"total".padStart(8)} ${
      "speedup".padStart(8)
    }  per kernel (ms); max rel. diff`,
);
for (const sk of shapes) {
  const s = SHAPES[sk], { B, T, H, dh } = s, D = H * dh;
  const qkvData = random(B * T * 3 * D, 1), doutData = random(B * T * D, 2);
  const mk = (f16: boolean, doutF16: boolean): Bufs => ({
    qkv: tensor(k, [B, T, 3 * D], qkvData, f16),
    out: tensor(k, [B, T, D], null, f16),
    aux: tensor(k, attentionAuxShape(B, T, D, H), null),
    dout: tensor(k, [B, T, D], doutData, doutF16),
    dqkv: tensor(k, [B, T, 3 * D], null, f16),
  });
  const bufs: Record<string, Bufs> = { old: mk(false, false), f32: mk(false, false) };
  if (hasF16) {
    bufs.f16 = mk(true, true);
    bufs.f16d32 = mk(true, false);
  }
  made[sk] = bufs;
  if (sk === shapes[0]) await warmUp(bufs.f32, H);
  let oldTotal = 0;
  const n2 = 2 * T * D, n2q = 2 * T * 3 * D; // first two images
  for (const [name, b] of Object.entries(bufs)) {
    let fwd: Dispatch[], bwd: Dispatch[];
    if (name === "old") {
      ({ fwd, bwd } = oldAttention(k, b, B, T, H, dh));
    } else {
      fwd = attentionForward(k, b.qkv, b.out, b.aux, H);
      bwd = attentionBackward(k, b.qkv, b.out, b.aux, b.dout, b.dqkv, H);
    }
    await k.run([...fwd, ...bwd]);
    const tf = await time(fwd), tb = await time(bwd);
    const per: string[] = [];
    for (const d of bwd) {
      per.push(`${d.label.replace("attn_bwd_", "")} ${(await time([d])).toFixed(3)}`);
    }
    if (name === "old") {
      oldTotal = tf + tb;
      oldSums.fwd += tf;
      oldSums.bwd += tb;
    }
    let check = "";
    if (name === "f32") {
      check = `; vs old: out ${(await diff(k, b.out, bufs.old.out, n2)).toExponential(1)}, dqkv ${
        (await diff(k, b.dqkv, bufs.old.dqkv, n2q)).toExponential(1)
      }`;
    } else if (name !== "old") {
      check = `; vs f32: out ${(await diff(k, b.out, bufs.f32.out, n2)).toExponential(1)}, dqkv ${
        (await diff(k, b.dqkv, bufs.f32.dqkv, n2q)).toExponential(1)
      }`;
    }
    const label = { old: "previous f32 (3 bwd)", f32: "f32", f16: "f16", f16d32: "f16, dout f32" }[
      name
    ]!;
    console.log(
      `${pad(s.name, 14)} ${pad(label, 22)} ${fmt(tf)} ${fmt(4 * flops(s) / tf / 1e9, 1)} ${
        fmt(tb)
      } ${fmt(10 * flops(s) / tb / 1e9, 1)} ${fmt(tf + tb)} ${fmt(oldTotal / (tf + tb), 2)}x  ${
        per.join(", ")
      }${check}`,
    );
  }
}

// ---- (2) tile sweep --------------------------------------------------------------------------

if (!noSweep) {
  await tileSweep({
    k,
    timer,
    shapes,
    made,
    oldSums,
    hasF16,
    ms: sweepMs,
    start,
    budgetS: BUDGET_S,
  });
}
console.log(`# ${((performance.now() - start) / 1e3).toFixed(1)} s`);
