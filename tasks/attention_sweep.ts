/**
 * Part (2) of tasks/attention_bench.ts: every candidate tile setting (attention_candidates.ts) per
 * kernel and precision timed at each shape and checked against part (1)'s outputs, then the best
 * totals and the `ATTENTION_DEFAULTS` (src/ops/attention_layout.ts) the measurements suggest.
 */
import type { Dispatch, Kernels, Tensor } from "../src/gpu/kernels.ts";
import {
  attentionAuxShape,
  attentionBackward,
  attentionForward,
  attentionLayout,
  type AttentionOptions,
  type AttentionTiles,
} from "../src/ops/attention.ts";
import type { Timer } from "./bench_timing.ts";
import { type Bufs, diff, fmt, pad, SHAPES, tensor, time } from "./attention_cases.ts";
import { SWEEP, tilesLabel, tilesTs } from "./attention_candidates.ts";

/** What the sweep measures with and against. */
export interface SweepSetup {
  k: Kernels;
  timer: Timer;
  /** Keys of SHAPES. */
  shapes: string[];
  /** Part (1)'s buffers per shape and variant ("old", "f32", "f16", "f16d32"). */
  made: Record<string, Record<string, Bufs>>;
  /** The previous kernels' ms, summed over the shapes. */
  oldSums: { fwd: number; bwd: number };
  hasF16: boolean;
  /** Batch length of a timing (ms). */
  ms: number;
  /** performance.now() at the start of the run, and the seconds after which no case starts. */
  start: number;
  budgetS: number;
}

type Kernel = "fwd" | "dq" | "dkv";
type Results = Record<string, { t: AttentionTiles; sum: number }[]>;

/** Outputs of the sweep's kernels, apart from part 1's (the references and saved inputs). */
function sweepBufs(s: SweepSetup, swept: Record<string, Bufs>, sk: string, prec: string): Bufs {
  const { B, T, H, dh } = SHAPES[sk], D = H * dh, f16 = prec === "f16";
  return swept[`${sk} ${prec}`] ??= {
    ...s.made[sk][prec],
    out: tensor(s.k, [B, T, D], null, f16),
    aux: tensor(s.k, attentionAuxShape(B, T, D, H), null),
    dqkv: tensor(s.k, [B, T, 3 * D], null, f16),
  };
}

function copy(k: Kernels, from: Tensor, to: Tensor) {
  const enc = k.device.createCommandEncoder();
  enc.copyBufferToBuffer(from.buffer, from.offset, to.buffer, to.offset, from.length * 4);
  k.device.queue.submit([enc.finish()]);
}

/**
 * One sweep case at every shape: ms per call, and the largest difference from the previous
 * kernels (f32) or f32 (f16) over the first two images.
 */
async function measureCase(
  s: SweepSetup,
  swept: Record<string, Bufs>,
  prec: string,
  kernel: Kernel,
  t: AttentionTiles,
) {
  const { k, made } = s;
  const ms: number[] = [];
  let err = 0;
  for (const sk of s.shapes) {
    const { T, H, dh } = SHAPES[sk], D = H * dh;
    const b = made[sk][prec], sw = sweepBufs(s, swept, sk, prec);
    const opts: AttentionOptions = { [kernel]: t };
    let d: Dispatch;
    if (kernel === "fwd") [d] = attentionForward(k, b.qkv, sw.out, sw.aux, H, opts);
    else if (kernel === "dq") {
      copy(k, b.aux, sw.aux); // the forward's logsumexps; dq writes aux[1] here
      [d] = attentionBackward(k, b.qkv, b.out, sw.aux, b.dout, sw.dqkv, H, opts);
    } else d = attentionBackward(k, b.qkv, b.out, b.aux, b.dout, sw.dqkv, H, opts)[1];
    ms.push(await time(k, s.timer, [d], s.ms));
    const ref = made[sk][prec === "f32" ? "old" : "f32"];
    const cols: [number, number, number] = kernel === "dq" ? [3 * D, 0, D] : [3 * D, D, 3 * D];
    err = Math.max(
      err,
      kernel === "fwd"
        ? await diff(k, sw.out, ref.out, 2 * T * D)
        : await diff(k, sw.dqkv, ref.dqkv, 2 * T * 3 * D, cols),
    );
  }
  return { ms, err };
}

/** Time every candidate (until the budget runs out), a table line each; the correct ones. */
async function measureAll(s: SweepSetup): Promise<Results> {
  const { shapes, hasF16 } = s;
  const wgLimit = s.k.device.limits.maxComputeWorkgroupStorageSize;
  const swept: Record<string, Bufs> = {};
  console.log(
    `\ntile sweep (ms per call; A×B / C×E: quads × columns per thread in phase 1 / 2 (row: one ` +
      `row a thread); KB: workgroup memory; /SM: workgroups that fit an SM's 228 KB)`,
  );
  console.log(
    `${pad("kernel", 10)} ${pad("tiles", 22)} ${pad("A×B / C×E", 11)} ${"KB".padStart(5)} ${
      "/SM".padStart(4)
    } ${shapes.map((s) => `${s} ms`.padStart(8)).join(" ")} ${"sum".padStart(8)}  max rel. diff`,
  );
  const results: Results = {};
  let stopped = false;
  for (const prec of hasF16 ? ["f32", "f16"] as const : ["f32"] as const) {
    for (const kernel of ["fwd", "dq", "dkv"] as const) {
      const key = `${prec} ${kernel}`;
      results[key] = [];
      for (const t of SWEEP[prec][kernel]) {
        if ((performance.now() - s.start) / 1e3 > s.budgetS) {
          stopped = true;
          break;
        }
        const l = attentionLayout(kernel, t, SHAPES[shapes[0]].dh, prec === "f16");
        const name = tilesLabel(t);
        if (typeof l === "string" || l.bytes > wgLimit) {
          console.log(
            `${pad(key, 10)} ${pad(name, 22)} skipped: ${
              typeof l === "string"
                ? l.replace(/^.*?: /, "")
                : `needs ${l.bytes} B of workgroup memory`
            }`,
          );
          continue;
        }
        const c = l.consts;
        const shape = t.rowwise ? "row" : `${c.A}×${c.B} / ${c.C}×${c.E}`;
        let ms: number[], err: number;
        try {
          ({ ms, err } = await measureCase(s, swept, prec, kernel, t));
        } catch (e) {
          console.log(`${pad(key, 10)} ${pad(name, 22)} failed: ${(e as Error).message}`);
          continue;
        }
        const sum = ms.reduce((a, b) => a + b, 0);
        const ok = err <= (prec === "f32" ? 1e-4 : 2e-2);
        if (ok) results[key].push({ t, sum });
        console.log(
          `${pad(key, 10)} ${pad(name + (l.tiles.share && !t.share ? " (share)" : ""), 22)} ${
            pad(shape, 11)
          } ${(l.bytes / 1024).toFixed(1).padStart(5)} ${
            String(Math.floor(228 * 1024 / (l.bytes + 1024))).padStart(4)
          } ${ms.map((v) => fmt(v)).join(" ")} ${fmt(sum)}  ${err.toExponential(1)}${
            ok ? "" : " WRONG (not picked)"
          }`,
        );
      }
    }
  }
  if (stopped) {
    console.log(`(sweep stopped at ${s.budgetS} s; rerun with --shapes=S or --no-sweep)`);
  }
  return results;
}

/** The sweep's table, the best totals against the previous kernels, and the suggested defaults. */
export async function tileSweep(s: SweepSetup): Promise<void> {
  const results = await measureAll(s);
  const precs = s.hasF16 ? ["f32", "f16"] : ["f32"];
  // The fastest two tiles per kernel (the second for devices with less workgroup memory).
  const best = (prec: string, kernel: string) =>
    [...(results[`${prec} ${kernel}`] ?? [])].sort((a, b) => a.sum - b.sum);
  for (const prec of precs) {
    const f = best(prec, "fwd")[0], q = best(prec, "dq")[0], v = best(prec, "dkv")[0];
    if (f && q && v) {
      console.log(
        `best ${prec} (sum over shapes): fwd ${f.sum.toFixed(3)} ms, bwd ${
          (q.sum + v.sum).toFixed(3)
        } ms (dq ${q.sum.toFixed(3)} + dkv ${v.sum.toFixed(3)}); previous f32 kernels: fwd ${
          s.oldSums.fwd.toFixed(3)
        }, bwd ${s.oldSums.bwd.toFixed(3)}`,
      );
    }
  }
  console.log(`\nsuggested ATTENTION_DEFAULTS (src/ops/attention_layout.ts):`);
  for (const prec of precs) {
    console.log(`  ${prec}: {`);
    for (const kernel of ["fwd", "dq", "dkv"]) {
      const picks = best(prec, kernel).slice(0, 2).map((r) => tilesTs(r.t));
      console.log(`    ${kernel}: [${picks.join(", ")}],`);
    }
    console.log(`  },`);
  }
}
