/**
 * `deno run -A tasks/train_vqvae.ts` end to end as subprocesses on the CPU adapter, tiny sizes:
 * the run directory (config, metrics rows, held-out evaluations, reconstruction grids,
 * checkpoints), the reconstruction loss falling, and bit-identical resume from a mid-run
 * checkpoint. Bad flags and corrupt or mismatched checkpoints are rows of robustness_test.ts.
 */
import { join } from "node:path";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/png.ts
import { Image } from "npm:imagescript@1.3.1";
import { decodeVqvaeCheckpoint } from "../src/vqvae/checkpoint.ts";
import { evaluateVqvae, loadVqvae } from "../mod.ts";
import { VQVAE_GPU_DEFAULTS } from "../src/vqvae/options.ts";
import { loadSplits } from "../tasks/train_vqvae_setup.ts";
import { vqvaePsnr } from "../scripts/vqvae_psnr.ts";
import { assert, expectOk, expectOneLineError, listTree, runTask } from "./task_run.ts";

const train = (args: string[]) => runTask("train_vqvae", args);

interface Row {
  step: number;
  loss: number;
  recon_loss: number;
  commit_loss: number;
  psnr: number;
  perplexity: number;
  codebook_usage: number;
  codes_used: number;
  grad_norm: number;
  lr: number;
}

async function rows(dir: string, file = "metrics.jsonl"): Promise<Row[]> {
  const text = await Deno.readTextFile(join(dir, file));
  return text.split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
}

const COMMON = [
  "--dataset",
  "default",
  "--channels",
  "4",
  "--groups",
  "2",
  "--res-blocks",
  "1",
  "--codebook-size",
  "16",
  "--code-dim",
  "2",
  "--dead-after",
  "3",
  "--batch-size",
  "2",
  "--steps",
  "16",
  "--lr",
  "3e-3",
  "--warmup",
  "2",
  "--eval-images",
  "8",
];

const exists = (p: string) => {
  try {
    Deno.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

const temps: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const t of temps) Deno.removeSync(t, { recursive: true });
});
const tempDir = async (prefix: string) => {
  const d = await Deno.makeTempDir({ prefix });
  temps.push(d);
  return d;
};

let reference: Promise<{ out: string; dir: string; rows: Row[] }> | undefined;
function referenceRun() {
  reference ??= (async () => {
    const out = await tempDir("flowgpu_vqvae_task_");
    // Augmented, so that the resume test below covers the flips' and shifts' random stream.
    const r = await train([
      ...COMMON,
      "--hflip",
      "--shift",
      "2",
      "--log-every",
      "4",
      "--ckpt-every",
      "8",
      "--sample-every",
      "8",
      "--eval-every",
      "8",
      "--out",
      out,
      "--name",
      "a",
    ]);
    expectOk(r, "reference run");
    const dir = join(out, "a");
    return { out, dir, rows: await rows(dir) };
  })();
  return reference;
}

Deno.test("train-vqvae: --help lists the flags with their defaults", async () => {
  const r = await train(["--help"]);
  expectOk(r, "--help");
  for (
    const s of [
      "--codebook-size <int>",
      "--code-dim <int>",
      "--dead-after <int>",
      "--eval-every <int>",
      "--resume <value>",
      "--bench",
      "[default: 512]",
      "[default: 0.25]",
      "(alias --steps)",
    ]
  ) assert(r.stdout.includes(s), `--help lacks ${s}:\n${r.stdout}`);
});

Deno.test("train-vqvae: run directory, metrics rows, held-out PSNR, grids, checkpoints", async () => {
  const { dir, rows: m } = await referenceRun();
  assert(m.length === 16 && m.every((r, i) => r.step === i + 1), `steps ${m.map((r) => r.step)}`);
  for (const r of m) {
    for (
      const key of [
        "loss",
        "recon_loss",
        "commit_loss",
        "psnr",
        "perplexity",
        "codebook_usage",
        "grad_norm",
        "lr",
      ] as const
    ) assert(Number.isFinite(r[key]), `step ${r.step}: ${key} = ${r[key]}`);
    assert(Math.abs(r.psnr - 10 * Math.log10(4 / r.recon_loss)) < 1e-9, "psnr from recon_loss");
    assert(
      Math.abs(r.loss - (r.recon_loss + 0.25 * r.commit_loss)) < 1e-6,
      "loss = recon + β·commit",
    );
    assert(r.codebook_usage === r.codes_used / 16 && r.perplexity <= r.codes_used + 1e-3, "usage");
  }
  const mean = (a: Row[]) => a.reduce((s, r) => s + r.recon_loss, 0) / a.length;
  console.log(
    `  recon loss steps 1-4 ${mean(m.slice(0, 4)).toFixed(4)}, 13-16 ${
      mean(m.slice(-4)).toFixed(4)
    }`,
  );
  assert(mean(m.slice(-4)) < 0.9 * mean(m.slice(0, 4)), "the reconstruction loss did not fall");
  const ev = await rows(dir, "eval.jsonl") as unknown as {
    step: number;
    psnr_heldout: number;
    images: number;
  }[];
  assert(
    ev.map((e) => e.step).join() === "8,16" &&
      ev.every((e) => e.images === 8 && e.psnr_heldout > 0),
    "eval rows",
  );
  const cfg = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  assert(cfg.vqvae?.codebook_size === 16 && cfg.vqvae?.image_size === 28, "config.json vqvae");
  assert(cfg.class_names?.length === 10 && cfg.class_names[9] === "Ankle boot", "class names");
  const grids = [...Deno.readDirSync(join(dir, "samples"))].map((e) => e.name).sort();
  assert(grids.join() === "recon_000008.png,recon_000016.png", `grids ${grids}`);
  // 32 held-out images: 4 pairs of rows (originals, reconstructions) × 8, 28 px at zoom 2.
  const g = await Image.decode(await Deno.readFile(join(dir, "samples", grids[1])));
  assert(g.width === 8 * 56 + 9 * 2 && g.height === 8 * 56 + 9 * 2, `grid ${g.width}×${g.height}`);
  const { out } = await referenceRun();
  assert(!exists(join(out, "latest")), "a VQ-VAE run moved runs/latest (flow runs' link)");
  const ckpts = [...Deno.readDirSync(join(dir, "checkpoints"))].map((e) => e.name).sort();
  assert(ckpts.join() === "final.safetensors,step_000008.safetensors", `checkpoints ${ckpts}`);
  const c = decodeVqvaeCheckpoint(
    await Deno.readFile(join(dir, "checkpoints", "final.safetensors")),
  );
  assert(c.m && c.v && c.train?.step === 16 && c.cfg.code_dim === 2, "final checkpoint");
  const w = decodeVqvaeCheckpoint(await Deno.readFile(join(dir, "vqvae.safetensors")));
  assert(!w.m && !w.train && w.params.every((v, i) => v === c.params[i]), "vqvae.safetensors");
  assert(w.state.every((v, i) => v === c.state[i]), "vqvae.safetensors state");
});

Deno.test("train-vqvae: --time-limit finishes early as at the last step", async () => {
  const out = await tempDir("flowgpu_vqvae_time_");
  const r = await train([...COMMON, "--steps", "100000", "--time-limit", "0.5", "--out", out]);
  expectOk(r, "--time-limit");
  const m = /done: (\d+) steps \(--time-limit 0\.5 s\); final checkpoint (\S+); weights (\S+)/
    .exec(r.stdout);
  assert(m && Number(m[1]) >= 1 && Number(m[1]) < 100000, r.stdout);
  const c = decodeVqvaeCheckpoint(await Deno.readFile(m[2]));
  assert(
    c.train?.step === Number(m[1]) && /held-out PSNR/.test(r.stdout),
    "final checkpoint, eval",
  );
  assert(decodeVqvaeCheckpoint(await Deno.readFile(m[3])).cfg.code_dim === 2, "weights file");
});

Deno.test("train-vqvae: --hflip and --shift augment the training batches and are saved", async () => {
  const { dir, rows: augmented } = await referenceRun();
  const saved = JSON.parse(await Deno.readTextFile(join(dir, "config.json")));
  assert(saved.train.hflip === true && saved.train.shift === 2, JSON.stringify(saved.train));
  // The same run without them: the same weights and data order, other pixels, other losses.
  const out = await tempDir("flowgpu_vqvae_plain_");
  expectOk(await train([...COMMON, "--steps", "2", "--out", out, "--name", "p"]), "plain run");
  const plain = await rows(join(out, "p"));
  assert(
    plain[0].recon_loss !== augmented[0].recon_loss,
    `step 1 recon loss ${plain[0].recon_loss} with and without augmentation`,
  );
  // A shift as large as the images: one line before anything is written.
  const bad = await tempDir("flowgpu_vqvae_badshift_");
  const r = await train([...COMMON, "--shift", "28", "--out", bad]);
  expectOneLineError(r, "--shift 28", /--shift 28: .*at most 27/, 2);
  assert((await listTree(bad)).length === 0, `written: ${await listTree(bad)}`);
});

Deno.test("scripts/vqvae_psnr.ts: through the codebook = the trainer's held-out figure", async () => {
  const { dir } = await referenceRun();
  const vq = await loadVqvae(join(dir, "vqvae.safetensors"));
  const { heldOut } = await loadSplits({ ...VQVAE_GPU_DEFAULTS, dataset: "default" });
  // encode → snap → decode, against the trainer's evaluation (one forward pass), on 40 images.
  const sub = { ...heldOut, length: 40, get: (i: number) => heldOut.get(i) };
  const r = await vqvaePsnr(vq, sub, 40, 8);
  const e = await evaluateVqvae(vq, sub, { batch: 8 });
  assert(r.images === 40 && Math.abs(r.quantized - e.psnr) < 1e-3, `${r.quantized} vs ${e.psnr}`);
  assert(Number.isFinite(r.raw) && r.raw !== r.quantized, `decoded as is: ${r.raw}`);
});

Deno.test("train-vqvae: resuming from a mid-run checkpoint is bit-identical", async () => {
  const { dir, rows: want } = await referenceRun();
  const other = join(await tempDir("flowgpu_vqvae_resume_"), "b");
  await Deno.mkdir(join(other, "checkpoints"), { recursive: true });
  const ck = join(other, "checkpoints", "step_000008.safetensors");
  await Deno.copyFile(join(dir, "checkpoints", "step_000008.safetensors"), ck);
  const r = await train(["--resume", ck]);
  expectOk(r, "resumed run");
  assert(/resumed from .*step_000008\.safetensors at step 8/.test(r.stdout), r.stdout);
  const got = await rows(other);
  assert(
    got.map((x) => x.step).join() === "9,10,11,12,13,14,15,16",
    `resumed steps ${got.map((x) => x.step)}`,
  );
  for (const row of got) {
    const w = want[row.step - 1];
    for (
      const key of ["recon_loss", "commit_loss", "perplexity", "codes_used", "grad_norm"] as const
    ) {
      assert(
        row[key] === w[key],
        `step ${row.step} ${key}: resumed ${row[key]}, uninterrupted ${w[key]}`,
      );
    }
  }
  const a = decodeVqvaeCheckpoint(
    await Deno.readFile(join(dir, "checkpoints", "final.safetensors")),
  );
  const b = decodeVqvaeCheckpoint(
    await Deno.readFile(join(other, "checkpoints", "final.safetensors")),
  );
  for (const key of ["params", "state", "m", "v"] as const) {
    assert(a[key]!.every((v, i) => Object.is(v, b[key]![i])), `final ${key} differ`);
  }
  assert(JSON.stringify(a.train) === JSON.stringify(b.train), "final trainer state differs");
});
