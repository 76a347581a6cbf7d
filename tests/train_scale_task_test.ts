/**
 * `deno task train` with the scaling flags (issue 13), as subprocesses on the CPU adapter: a run
 * with Muon, micro-batches and activation checkpointing resumes bit-identically from a mid-run
 * checkpoint (which names Muon's state opt.momentum_buffer.*), a resumed run keeps its optimizer,
 * a run past the device's limits stops with one line and writes nothing, and --image-size trains
 * Fashion-MNIST at another size.
 */
import { join } from "node:path";
import {
  decodeCheckpoint,
  decodeSafetensors,
  getGpu,
  muonParamNames,
  resolveConfig,
} from "../mod.ts";
import { assert, expectOk, expectOneLineError, listTree, runTask } from "./task_run.ts";

const train = (args: string[]) => runTask("train", args);

interface Row {
  step: number;
  loss: number;
  grad_norm: number;
  lr: number;
}

async function metrics(runDir: string): Promise<Row[]> {
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl"));
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

const SCALED = [
  ...["--preset", "tiny", "--dataset", "default", "--batch-size", "4", "--steps", "8"],
  ...["--micro-batch-size", "2", "--grad-checkpointing", "--optimizer", "muon"],
  ...["--muon-lr", "0.01", "--warmup", "2", "--sample-every", "0", "--log-every", "2"],
];

Deno.test("train task: Muon + micro-batches + checkpointing resume bit-identically", async () => {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_scale_" });
  const a = await train([...SCALED, "--ckpt-every", "4", "--out", out, "--name", "a"]);
  expectOk(a, "scaled run");
  assert(
    /in 2 micro-batches of 2, activation checkpointing; Muon \(lr 0\.01/.test(a.stdout),
    a.stdout,
  );
  const rows = await metrics(join(out, "a"));
  assert(rows.length === 8 && rows.every((r) => Number.isFinite(r.loss)), "8 finite rows");
  // The mid-run checkpoint: Muon's matrices carry a momentum buffer, no Adam moments.
  const ck = join(out, "a", "checkpoints", "step_000004.safetensors");
  const bytes = await Deno.readFile(ck);
  const names = [...decodeSafetensors(bytes).tensors.keys()];
  const cfg = resolveConfig({ preset: "tiny", image_size: 28, in_channels: 1, num_classes: 10 });
  const muon = muonParamNames(cfg);
  for (const n of muon) {
    assert(names.includes(`opt.momentum_buffer.${n}`), `no opt.momentum_buffer.${n}`);
    assert(!names.includes(`opt.exp_avg.${n}`) && !names.includes(`opt.exp_avg_sq.${n}`), n);
  }
  assert(names.includes("opt.exp_avg.blocks.0.attn.qkv.bias"), "AdamW's moments of a bias");
  const c = decodeCheckpoint(bytes);
  const momentum = decodeSafetensors(bytes).tensors.get(`opt.momentum_buffer.${muon[0]}`)!;
  assert(momentum.data.some((x) => x !== 0), "a zero momentum buffer after 4 steps");
  assert(c.m && c.v, "decoded optimizer state");
  // resume a copy in a fresh directory: the same losses, bit for bit
  const other = join(out, "b");
  await Deno.mkdir(join(other, "checkpoints"), { recursive: true });
  await Deno.copyFile(ck, join(other, "checkpoints", "step_000004.safetensors"));
  const r = await train(["--resume", join(other, "checkpoints", "step_000004.safetensors")]);
  expectOk(r, "resumed scaled run");
  const resumed = await metrics(other);
  assert(
    resumed.map((x) => x.step).join() === "5,6,7,8",
    `resumed steps ${resumed.map((x) => x.step)}`,
  );
  for (const row of resumed) {
    const want = rows[row.step - 1];
    assert(
      row.loss === want.loss && row.grad_norm === want.grad_norm && row.lr === want.lr,
      `step ${row.step}: resumed loss ${row.loss}, uninterrupted ${want.loss}`,
    );
  }
  const fa = decodeCheckpoint(
    await Deno.readFile(join(out, "a", "checkpoints", "final.safetensors")),
  );
  const fb = decodeCheckpoint(await Deno.readFile(join(other, "checkpoints", "final.safetensors")));
  for (const key of ["params", "ema", "m", "v"] as const) {
    assert(fa[key]!.every((v, i) => Object.is(v, fb[key]![i])), `final ${key} differ`);
  }
  // a resumed run keeps its optimizer: one line, nothing written
  const before = await listTree(other);
  const bad = await train(["--resume", other, "--optimizer", "adamw", "--steps", "10"]);
  expectOneLineError(bad, "--optimizer adamw on a Muon run", /holds muon's state/, 2);
  assert((await listTree(other)).join() === before.join(), "the refused resume wrote files");
  await Deno.remove(out, { recursive: true });
});

// The two runs below are sized to trip WebGPU's default 128 MiB storage binding, which software
// adapters keep; a GPU allows far more, where they would fit and train, so there the test is
// skipped. Each run is also one step long, so a run that does fit ends at once (and fails
// the test) instead of training the GPU profile's 100,000 steps.
const BINDING = (await getGpu()).device.limits.maxStorageBufferBindingSize;
const SMALL_BINDING = BINDING === 128 * 2 ** 20;
const ONE_STEP = ["--steps", "1", "--sample-every", "0", "--ckpt-every", "0"];

Deno.test({
  name: "train task: a run past the device's limits stops with one line, writing nothing" +
    (SMALL_BINDING ? "" : ` (this adapter binds ${BINDING / 2 ** 20} MiB, not 128: skipped)`),
  ignore: !SMALL_BINDING,
  fn: trainPastLimits,
});

async function trainPastLimits() {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_oom_" });
  // B/2's flat buffers (494 MiB of gradients, bound whole) exceed a software adapter's 128 MiB
  // storage bindings; only a smaller preset fits.
  const b = await train([
    ...["--preset", "B", "--dataset", "default", ...ONE_STEP],
    ...["--out", out, "--name", "b"],
  ]);
  expectOneLineError(
    b,
    "preset B",
    /^error: out of memory: DiT-B\/2 on 1×28², batch 16, f32 needs [\d.]+ GiB of buffers, one storage binding of 494\.1 MiB \(grads\) where the device allows 128\.0 MiB \(maxStorageBufferBindingSize\); fits with: --preset S \([\d.]+ GiB in all\)$/,
    2,
  );
  // small/2 at 64×64, batch 64: one activation of 256 MiB; half the micro-batch fits.
  const s = await train([
    ...["--preset", "small", "--dataset", "default", "--image-size", "64", "--batch-size", "64"],
    ...ONE_STEP,
    ...["--out", out, "--name", "s"],
  ]);
  expectOneLineError(
    s,
    "small at 64²",
    /needs [\d.]+ GiB of buffers, one storage binding of 256\.0 MiB \(blocks\.0\.mlp\.act\) .*; fits with: --micro-batch-size 32 \([\d.]+ GiB in all\) or --preset tiny/,
    2,
  );
  assert((await listTree(out)).length === 0, `files written: ${await listTree(out)}`);
  await Deno.remove(out, { recursive: true });
}

Deno.test("train task: --image-size trains Fashion-MNIST at 16×16; a bad micro-batch is refused", async () => {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_size_" });
  const r = await train([
    ...["--preset", "tiny", "--dataset", "default", "--image-size", "16", "--steps", "2"],
    ...["--batch-size", "2", "--sample-every", "0", "--out", out, "--name", "x"],
  ]);
  expectOk(r, "--image-size 16");
  assert(/on 1×16²/.test(r.stdout), r.stdout);
  const config = JSON.parse(await Deno.readTextFile(join(out, "x", "config.json")));
  assert(config.model.image_size === 16 && config.train.image_size === 16, "config.json at 16");
  const bad = await train(["--batch-size", "6", "--micro-batch-size", "4", "--out", out]);
  expectOneLineError(bad, "micro 4 of 6", /--micro-batch-size 4 must divide --batch-size 6/, 2);
  await Deno.remove(out, { recursive: true });
});

Deno.test("bench --memory: the memory of a configuration far past this device, without training", async () => {
  const r = await runTask("bench", [
    ...["--memory", "--preset", "B", "--image-size", "64", "--batch-size", "256"],
    ...["--precision", "f32"],
  ]);
  expectOk(r, "bench --memory");
  const json = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith("JSON: "))!.slice(6));
  const [run] = json.runs;
  assert(
    run.memory.total_bytes > 150 * 2 ** 30,
    `B/2 at 64², batch 256: ${run.memory.total_bytes}`,
  );
  const cut = run.memory.activation_bytes / run.with_checkpointing.activation_bytes;
  assert(cut > 3, `checkpointing cuts activations ${cut}×`);
  assert(/^out of memory: DiT-B\/2 on 1×64², batch 256, f32/.test(run.refused), run.refused);
  assert(/checkpointing cuts activations [\d.]+×/.test(r.stdout), r.stdout);
});
