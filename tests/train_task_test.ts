/**
 * `deno run -A tasks/train.ts` end to end, as subprocesses on the CPU adapter: the run directory's
 * files, the loss falling on the embedded data, bit-identical resume from a mid-run checkpoint,
 * kill -9 then `--resume auto`, Ctrl-C, a NaN loss (bad input: robustness_test.ts).
 */
import { join } from "node:path";
import { decodeCheckpoint, getGpu, TRAIN_OPTIONS } from "../mod.ts";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/png.ts
import { Image } from "npm:imagescript@1.3.1";
import { assert, expectOk, expectOneLineError, runTask } from "./task_run.ts";

const TRAIN = new URL("../tasks/train.ts", import.meta.url).pathname;
const train = (args: string[]) => runTask("train", args);

interface Row {
  step: number;
  loss: number;
  lr: number;
  grad_norm: number;
  images_per_s: number;
}

async function metrics(runDir: string): Promise<Row[]> {
  const text = await Deno.readTextFile(join(runDir, "metrics.jsonl"));
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

/** Every row has the documented fields, and the steps are exactly from..to. */
function checkRows(rows: Row[], from: number, to: number, what: string): void {
  assert(
    rows.length === to - from + 1 && rows.every((r, i) => r.step === from + i),
    `${what}: steps ${rows.map((r) => r.step)} (want ${from}..${to})`,
  );
  for (const r of rows) {
    for (const key of ["loss", "lr", "grad_norm", "images_per_s"] as const) {
      assert(
        typeof r[key] === "number" && Number.isFinite(r[key]),
        `${what}: step ${r.step} has ${key} = ${r[key]}`,
      );
    }
  }
}

const mean = (a: number[]) => a.reduce((s, x) => s + x, 0) / a.length;

/** Training flags shared by the runs (ckpt/log cadence does not change the arithmetic). */
const COMMON = [
  "--preset",
  "tiny",
  "--dataset",
  "default",
  "--batch-size",
  "4",
  "--steps",
  "30",
  "--lr",
  "3e-3",
  "--warmup",
  "3",
  "--sample-every",
  "0",
  "--num-sampling-steps",
  "2",
];

/** The uninterrupted run, shared by the tests below (made once). */
let reference: Promise<{ dir: string; rows: Row[] }> | undefined;
function referenceRun(): Promise<{ dir: string; rows: Row[] }> {
  reference ??= (async () => {
    const out = await Deno.makeTempDir({ prefix: "flowgpu_train_" });
    const r = await train([
      ...COMMON,
      "--log-every",
      "2",
      "--ckpt-every",
      "15",
      "--sample-every",
      "30",
      "--out",
      out,
      "--name",
      "a",
    ]);
    expectOk(r, "uninterrupted run");
    const dir = join(out, "a");
    return { dir, rows: await metrics(dir) };
  })();
  return reference;
}

Deno.test("train task: --help lists every option of the table with its defaults", async () => {
  const r = await train(["--help"]);
  expectOk(r, "--help");
  const lines = r.stdout.split("\n");
  for (const [name, spec] of Object.entries(TRAIN_OPTIONS)) {
    const flag = `--${name.replaceAll("_", "-")} `;
    const line = lines.find((l) => l.trimStart().startsWith(flag));
    assert(line, `--help lacks ${flag}:\n${r.stdout}`);
    if (spec.default !== undefined) {
      const show = (v: unknown) =>
        typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : String(v);
      const want = `[default: ${show(spec.default)}` +
        (spec.cpu !== undefined ? `; CPU profile: ${show(spec.cpu)}]` : "]");
      assert(line.includes(want), `${flag}: want ${want} in "${line}"`);
    }
  }
  for (const s of ["--config <value>", "--resume <value>", "--overwrite", "(alias --steps)"]) {
    assert(r.stdout.includes(s), `--help lacks ${s}`);
  }
  assert(/Debian's\s+dataset-fashion-mnist/.test(r.stdout), "--help: the default dataset");
});

Deno.test("train task: run directory files, and the loss falls on the embedded data", async () => {
  const { dir, rows } = await referenceRun();
  checkRows(rows, 1, 30, "metrics.jsonl");
  const first = mean(rows.slice(0, 5).map((r) => r.loss));
  const last = mean(rows.slice(-5).map((r) => r.loss));
  console.log(`  mean loss of steps 1-5 ${first.toFixed(4)}, of steps 26-30 ${last.toFixed(4)}`);
  assert(last < 0.85 * first, `loss did not fall: ${first} → ${last}`);
  assert(rows[0].lr === 1e-3 && rows[29].lr === 3e-3, "lr: warmup 3 steps to 3e-3");

  const config = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  assert(config.model?.hidden_size === 64 && config.model?.image_size === 28, "config.json model");
  assert(config.train?.batch_size === 4 && config.train?.lr === 3e-3, "config.json train");
  const samples = [...Deno.readDirSync(join(dir, "samples"))].map((e) => e.name);
  assert(samples.length >= 1 && samples.every((n) => n.endsWith(".png")), `samples: ${samples}`);
  // 10 class rows × 8 columns of 28×28 images at zoom 2 with 2-pixel padding
  const grid = await Image.decode(await Deno.readFile(join(dir, "samples", samples[0])));
  assert(
    grid.width === 8 * 56 + 9 * 2 && grid.height === 10 * 56 + 11 * 2,
    `sample grid ${grid.width}×${grid.height}`,
  );
  const curve = await Image.decode(await Deno.readFile(join(dir, "loss.png")));
  assert(curve.width === 720 && curve.height === 400, `loss.png ${curve.width}×${curve.height}`);
  const ckpts = [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  assert(
    ckpts.join() === "final.safetensors,step_000015.safetensors",
    `checkpoints: ${ckpts}`,
  );
  const final = decodeCheckpoint(
    await Deno.readFile(join(dir, "checkpoints", "final.safetensors")),
  );
  assert(final.ema && final.m && final.v && final.state?.step === 30, "final checkpoint state");
});

Deno.test("train task: resuming from a mid-run checkpoint is bit-identical", async () => {
  const { dir, rows } = await referenceRun();
  // resume a copy of the step-15 checkpoint in a fresh run directory
  const other = join(await Deno.makeTempDir({ prefix: "flowgpu_resume_" }), "b");
  await Deno.mkdir(join(other, "checkpoints"), { recursive: true });
  const ck = join(other, "checkpoints", "step_000015.safetensors");
  await Deno.copyFile(join(dir, "checkpoints", "step_000015.safetensors"), ck);
  const r = await train(["--resume", ck]);
  expectOk(r, "resumed run");
  assert(/resumed from .*step_000015\.safetensors at step 15/.test(r.stdout), r.stdout);
  const resumed = await metrics(other);
  checkRows(resumed, 16, 30, "resumed metrics.jsonl");
  for (const row of resumed) {
    const want = rows[row.step - 1];
    assert(
      row.loss === want.loss && row.grad_norm === want.grad_norm && row.lr === want.lr,
      `step ${row.step}: resumed loss ${row.loss} grad ${row.grad_norm}, ` +
        `uninterrupted ${want.loss} grad ${want.grad_norm}`,
    );
  }
  const a = decodeCheckpoint(await Deno.readFile(join(dir, "checkpoints", "final.safetensors")));
  const b = decodeCheckpoint(await Deno.readFile(join(other, "checkpoints", "final.safetensors")));
  for (const key of ["params", "ema", "m", "v"] as const) {
    const x = a[key]!, y = b[key]!;
    assert(x.length === y.length && x.every((v, i) => Object.is(v, y[i])), `final ${key} differ`);
  }
  assert(JSON.stringify(a.state) === JSON.stringify(b.state), "final trainer state differs");
});

Deno.test("train task: kill -9 mid-run, then --resume auto finishes the run", async () => {
  const { rows: want } = await referenceRun();
  const out = await Deno.makeTempDir({ prefix: "flowgpu_kill_" });
  const dir = join(out, "k");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      TRAIN,
      ...COMMON,
      "--log-every",
      "1",
      "--ckpt-every",
      "5",
      "--out",
      out,
      "--name",
      "k",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  // wait for the step-10 checkpoint and a metrics row after it, then kill without warning
  const t0 = performance.now();
  const ck10 = join(dir, "checkpoints", "step_000010.safetensors");
  for (;;) {
    const rows = await metrics(dir).catch(() => []);
    const have = await Deno.stat(ck10).then(() => true, () => false);
    if (have && rows.some((r) => r.step > 10)) break;
    if (performance.now() - t0 > 240_000) throw new Error("no step-10 checkpoint in 240 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  const status = await child.status;
  assert(!status.success, "the run finished before it was killed: make it longer");
  const before = await metrics(dir);
  const killedAt = before[before.length - 1].step;
  assert(
    !(await Deno.stat(join(dir, "checkpoints", "final.safetensors")).then(() => true, () => false)),
    "a final checkpoint exists after kill -9",
  );

  const r = await train(["--resume", "auto", "--out", out]);
  expectOk(r, "--resume auto");
  const m = r.stdout.match(/resumed from (\S+) at step (\d+)/);
  assert(m, `no "resumed from" line:\n${r.stdout}`);
  const step = Number(m[2]);
  assert(
    m[1].startsWith(join(dir, "checkpoints")) && step % 5 === 0 && step >= 10 && step <= killedAt,
    `resumed from ${m[1]} at step ${step} (killed after step ${killedAt})`,
  );
  assert(/done: 30 steps/.test(r.stdout), r.stdout);
  const rows = await metrics(dir);
  checkRows(rows, 1, 30, "metrics.jsonl after kill and resume");
  for (const row of rows) {
    assert(
      row.loss === want[row.step - 1].loss,
      `step ${row.step}: loss ${row.loss}, uninterrupted ${want[row.step - 1].loss}`,
    );
  }
  const grids = await Array.fromAsync(Deno.readDir(join(dir, "samples"))).catch(() => []);
  assert(grids.length === 0, `--sample-every 0 wrote grids: ${grids.map((e) => e.name)}`);
  console.log(`  killed after step ${killedAt}, resumed at step ${step}`);
});

Deno.test("train task: Ctrl-C writes a checkpoint of the current step and exits 130", async () => {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_sigint_" });
  const dir = join(out, "s");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", TRAIN, ...COMMON, "--log-every", "1", "--out", out, "--name", "s"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const t0 = performance.now();
  while (!(await metrics(dir).catch(() => [])).some((r) => r.step >= 3)) {
    if (performance.now() - t0 > 240_000) throw new Error("no step 3 in 240 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGINT");
  const { code, stdout } = await child.output();
  const text = new TextDecoder().decode(stdout);
  assert(code === 130, `exit ${code} after SIGINT:\n${text}`);
  const m = text.match(/checkpoint: (\S+step_(\d+)\.safetensors)\nresume with: .*--resume \1/);
  assert(m, `no checkpoint/resume lines:\n${text}`);
  const ck = decodeCheckpoint(await Deno.readFile(m[1]));
  assert(ck.state?.step === Number(m[2]) && ck.m && ck.v && ck.ema, "interrupted checkpoint");
  const rows = await metrics(dir);
  checkRows(rows, 1, Number(m[2]), "metrics.jsonl after Ctrl-C");
});

Deno.test("train task: a non-finite loss stops the run and names the last good checkpoint", async () => {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_train_nan_" });
  // An absurd learning rate: the first steps are fine, then the weights overflow and the loss is NaN.
  const args = [
    ...COMMON,
    "--lr",
    "1e30",
    "--warmup",
    "0",
    "--log-every",
    "1",
    "--ckpt-every",
    "1",
  ];
  const r = await train([...args, "--out", out, "--name", "nan"]);
  assert(r.code !== 0, `a NaN run exited ${r.code}`);
  // Whichever is seen first: the NaN loss, or non-finite weights when the checkpoint is checked.
  expectOneLineError(
    r,
    "NaN loss",
    /(loss is (NaN|Infinity|-Infinity) at step \d+: stopping|non-finite value at step \d+).*last good/,
  );
  const files = [];
  for await (const e of Deno.readDir(join(out, "nan", "checkpoints"))) files.push(e.name);
  assert(!files.includes("final.safetensors"), "a NaN run wrote final.safetensors");
  await Deno.remove(out, { recursive: true });
});

Deno.test("train task: --precision f16 trains with a logged loss scale and saves it", async (t) => {
  if (!(await getGpu()).features.has("shader-f16")) {
    console.log("  skipped: the adapter lacks shader-f16");
    return;
  }
  const out = await Deno.makeTempDir({ prefix: "flowgpu_train_f16_" });
  const r = await train([
    ...COMMON,
    ...["--steps", "6", "--precision", "f16", "--loss-scale", "1024", "--loss-scale-window", "2"],
    ...["--log-every", "2", "--out", out, "--name", "h"],
  ]);
  expectOk(r, "f16 run");
  assert(/f16 \(mixed, loss scale 1024\)/.test(r.stdout), r.stdout);
  const rows = await metrics(join(out, "h")) as (Row & { loss_scale: number; skipped: boolean })[];
  checkRows(rows, 1, 6, "f16 metrics.jsonl");
  // DiT's zero-init gates keep the f16 gradients tiny: no overflow, the scale doubles every 2.
  assert(
    rows.map((x) => `${x.loss_scale}${x.skipped ? "s" : ""}`).join() ===
      "1024,1024,2048,2048,4096,4096",
    `scales ${rows.map((x) => x.loss_scale)}`,
  );
  const c = decodeCheckpoint(
    await Deno.readFile(join(out, "h", "checkpoints", "final.safetensors")),
  );
  assert(
    JSON.stringify(c.state?.lossScale) === JSON.stringify({ scale: 8192, good: 0, skipped: 0 }),
    `saved loss scale ${JSON.stringify(c.state?.lossScale)}`,
  );
  assert(c.state?.options?.precision === "f16", "saved precision");
  await t.step("generate --precision f16 from it", async () => {
    const png = join(out, "g.png");
    const g = await runTask("generate", [
      ...["--checkpoint", join(out, "h"), "--num-samples", "2", "--num-steps", "2"],
      ...["--precision", "f16", "--out", png],
    ]);
    expectOk(g, "generate f16");
    assert(/, f16$/m.test(g.stdout), g.stdout);
  });
  await Deno.remove(out, { recursive: true });
});
