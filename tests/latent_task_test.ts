/**
 * Latent flow matching end to end as a user runs it, on the CPU adapter at tiny sizes:
 * `train-vqvae` on a small image folder, `train --vqvae` on its latents (the encoded dataset
 * cached in the run directory, config.json and checkpoints with the VQ-VAE, scale and class
 * names, sample grids decoded to pixels), a bit-identical resume that encodes the dataset again
 * from the checkpoint's own VQ-VAE, and `generate` on the flow checkpoint (snapped to the codebook
 * by default, `--no-quantize` as sampled); in f16 mixed precision, training (loss-scale metrics
 * rows, decoded grid) and generate. One-line errors for corrupt or mismatched VQ-VAE
 * checkpoints are rows of robustness_test.ts.
 */
import { join } from "node:path";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/png.ts
import { Image } from "npm:imagescript@1.3.1";
import { decodeCheckpoint, encodePng } from "../mod.ts";
import { assert, expectOk, runTask } from "./task_run.ts";
import { testF16 } from "./harness.ts";

const temps: string[] = [];
globalThis.addEventListener("unload", () => {
  for (const t of temps) Deno.removeSync(t, { recursive: true });
});

interface Row {
  step: number;
  loss: number;
  grad_norm: number;
}
const rows = async (dir: string): Promise<Row[]> =>
  (await Deno.readTextFile(join(dir, "metrics.jsonl"))).split("\n").filter((l) => l.trim())
    .map((l) => JSON.parse(l));

/** Two classes of 16×16 RGB images: discs and bars at varying places and colours. */
async function imageFolder(root: string): Promise<string> {
  const dir = join(root, "images");
  for (const [c, name] of ["bars", "discs"].entries()) {
    await Deno.mkdir(join(dir, name), { recursive: true });
    for (let i = 0; i < 8; i++) {
      const px = new Uint8Array(16 * 16 * 3).fill(255);
      for (let y = 0; y < 16; y++) {
        for (let x = 0; x < 16; x++) {
          const on = c === 0
            ? Math.abs(x - 3 - i) < 2
            : (x - 4 - i) ** 2 + (y - 6 - (i % 4)) ** 2 < 12;
          if (on) px.set([40 * i, 200 - 20 * i, 120], (y * 16 + x) * 3);
        }
      }
      await Deno.writeFile(join(dir, name, `${i}.png`), await encodePng(px, 16, 16, 3));
    }
  }
  return dir;
}

let setup: Promise<{ out: string; data: string; fm: string; rows: Row[] }> | undefined;
function latentRun() {
  setup ??= (async () => {
    const out = await Deno.makeTempDir({ prefix: "flowgpu_latent_task_" });
    temps.push(out);
    const data = await imageFolder(out);
    const folder = ["--dataset", "folder", "--data", data];
    const vq = await runTask("train_vqvae", [
      ...folder,
      ...["--image-size", "16", "--channels", "4", "--groups", "2", "--res-blocks", "1"],
      ...["--codebook-size", "8", "--code-dim", "2", "--batch-size", "4", "--steps", "6"],
      ...["--eval-images", "2", "--out", out, "--name", "vq"],
    ]);
    expectOk(vq, "train-vqvae");
    const fm = await runTask("train", [
      ...folder,
      ...["--vqvae", join(out, "vq"), "--preset", "tiny", "--batch-size", "4", "--steps", "8"],
      ...["--ckpt-every", "4", "--sample-every", "8", "--num-sampling-steps", "2", "--log-every"],
      ...["2", "--out", out, "--name", "fm"],
    ]);
    expectOk(fm, "train --vqvae");
    assert(/latents: encoded 16 images/.test(fm.stdout), fm.stdout);
    assert(/2×4² latents of 3×16² images, scale \d/.test(fm.stdout), fm.stdout);
    assert(/patch=1 on 2×4²/.test(fm.stdout), fm.stdout);
    const dir = join(out, "fm");
    return { out, data, fm: dir, rows: await rows(dir) };
  })();
  return setup;
}

Deno.test("train --vqvae: latents cached, VQ-VAE, scale and class names in the run", async () => {
  const { fm, rows: m } = await latentRun();
  assert(m.map((r) => r.step).join() === "1,2,3,4,5,6,7,8", `steps ${m.map((r) => r.step)}`);
  assert(m.every((r) => Number.isFinite(r.loss) && r.loss > 0), "losses");
  const cfg = JSON.parse(await Deno.readTextFile(join(fm, "config.json")));
  assert(cfg.model.in_channels === 2 && cfg.model.image_size === 4, "model on the latent grid");
  assert(cfg.class_names.join() === "bars,discs", `class names ${cfg.class_names}`);
  assert(cfg.latent.vqvae.code_dim === 2 && cfg.latent.scale > 0, "latent space in config");
  const st = await Deno.stat(join(fm, "latents.safetensors"));
  assert(st.size > 16 * 2 * 16 * 4, `cache of ${st.size} bytes`);
  const c = decodeCheckpoint(await Deno.readFile(join(fm, "checkpoints", "final.safetensors")));
  assert(c.latent && c.latent.scale === cfg.latent.scale, "scale in the checkpoint");
  assert(c.latent.vqvae.cfg.image_size === 16 && c.classNames?.join() === "bars,discs", "ckpt");
  // the sample grid is decoded: 2 class rows × 8 of 16 px images at zoom 2
  const g = await Image.decode(await Deno.readFile(join(fm, "samples", "step_000008.png")));
  assert(g.width === 8 * 32 + 9 * 2 && g.height === 2 * 32 + 3 * 2, `grid ${g.width}×${g.height}`);
});

Deno.test("train --vqvae: resuming without the cache encodes again, bit-identically", async () => {
  const { out, data, fm, rows: want } = await latentRun();
  const other = join(out, "resumed");
  await Deno.mkdir(join(other, "checkpoints"), { recursive: true });
  const ck = join(other, "checkpoints", "step_000004.safetensors");
  await Deno.copyFile(join(fm, "checkpoints", "step_000004.safetensors"), ck);
  const r = await runTask("train", ["--resume", ck, "--dataset", "folder", "--data", data]);
  expectOk(r, "resumed latent run");
  assert(/latents: encoded 16 images/.test(r.stdout), r.stdout);
  const got = await rows(other);
  assert(got.map((x) => x.step).join() === "5,6,7,8", `steps ${got.map((x) => x.step)}`);
  for (const row of got) {
    const w = want[row.step - 1];
    assert(row.loss === w.loss && row.grad_norm === w.grad_norm, `step ${row.step} differs`);
  }
  // again with the cache there: read, not encoded
  await Deno.remove(join(other, "checkpoints", "final.safetensors"));
  const again = await runTask("train", ["--resume", ck, "--out", out, "--name", "resumed"]);
  expectOk(again, "resumed with the cache");
  assert(/latents: 16 from .*latents\.safetensors/.test(again.stdout), again.stdout);
});

Deno.test("train --time-limit finishes early with a final checkpoint and grid", async () => {
  const { out, data } = await latentRun();
  const r = await runTask("train", [
    ...["--dataset", "folder", "--data", data, "--vqvae", join(out, "vq"), "--preset", "tiny"],
    ...["--batch-size", "4", "--steps", "100000", "--sample-every", "100000", "--ckpt-every", "0"],
    ...["--num-sampling-steps", "1", "--time-limit", "0.5", "--out", out, "--name", "timed"],
  ]);
  expectOk(r, "--time-limit");
  const m = /done: (\d+) steps \(--time-limit 0\.5 s\); final checkpoint (\S+)/.exec(r.stdout);
  assert(m && Number(m[1]) >= 1 && Number(m[1]) < 100000, r.stdout);
  const c = decodeCheckpoint(await Deno.readFile(m[2]));
  assert(c.state?.step === Number(m[1]) && c.latent !== undefined, "final checkpoint");
  const grids = [...Deno.readDirSync(join(out, "timed", "samples"))].map((e) => e.name);
  assert(grids.length === 1 && grids[0] === `step_${m[1].padStart(6, "0")}.png`, `${grids}`);
});

Deno.test("generate on a latent checkpoint: decoded images, --no-quantize, named rows", async () => {
  const { out, fm } = await latentRun();
  const args = ["--checkpoint", fm, "--class-grid", "--samples-per-class", "3", "--num-steps", "2"];
  const a = join(out, "snapped.png"), b = join(out, "raw.png");
  const r = await runTask("generate", [...args, "--out", a]);
  expectOk(r, "generate");
  assert(/snapped to the 8-code codebook/.test(r.stdout), r.stdout);
  assert(/rows: 0 bars, 1 discs/.test(r.stdout), r.stdout);
  const raw = await runTask("generate", [...args, "--no-quantize", "--out", b]);
  expectOk(raw, "generate --no-quantize");
  assert(/\(as sampled\)/.test(raw.stdout), raw.stdout);
  const [ia, ib] = await Promise.all([a, b].map(async (p) => Image.decode(await Deno.readFile(p))));
  assert(ia.width === 3 * 32 + 4 * 2 && ia.height === 2 * 32 + 3 * 2, `${ia.width}×${ia.height}`);
  assert(ib.width === ia.width && ib.height === ia.height, "sizes");
  let diff = 0;
  for (let i = 0; i < ia.bitmap.length; i++) diff += Math.abs(ia.bitmap[i] - ib.bitmap[i]);
  assert(diff > 0, "--no-quantize gave the snapped images");
});

await testF16(
  "train --vqvae --precision f16: loss-scale rows, a decoded grid, f16 generate",
  async () => {
    const { out, data } = await latentRun();
    const r = await runTask("train", [
      ...["--dataset", "folder", "--data", data, "--vqvae", join(out, "vq"), "--preset", "tiny"],
      ...["--precision", "f16", "--batch-size", "4", "--steps", "4", "--sample-every", "4"],
      ...["--log-every", "2", "--num-sampling-steps", "2", "--out", out, "--name", "f16"],
    ]);
    expectOk(r, "train --vqvae --precision f16");
    assert(/patch=1 on 2×4².*; f16 \(mixed, loss scale 65536\)/.test(r.stdout), r.stdout);
    const m = await rows(join(out, "f16")) as (Row & { loss_scale: number; skipped: boolean })[];
    assert(m.map((x) => x.step).join() === "1,2,3,4", `steps ${m.map((x) => x.step)}`);
    for (const x of m) {
      assert(Number.isFinite(x.loss) && x.loss > 0, `step ${x.step}: loss ${x.loss}`);
      assert(
        x.loss_scale > 0 && typeof x.skipped === "boolean",
        `step ${x.step}: ${JSON.stringify(x)}`,
      );
    }
    const g = await Image.decode(
      await Deno.readFile(join(out, "f16", "samples", "step_000004.png")),
    );
    assert(
      g.width === 8 * 32 + 9 * 2 && g.height === 2 * 32 + 3 * 2,
      `grid ${g.width}×${g.height}`,
    );
    const png = join(out, "f16.png");
    const gen = await runTask("generate", [
      ...["--checkpoint", join(out, "f16"), "--precision", "f16", "--num-samples", "4"],
      ...["--num-steps", "2", "--out", png],
    ]);
    expectOk(gen, "generate --precision f16 on a latent checkpoint");
    assert(
      /, f16\n/.test(gen.stdout) && /snapped to the 8-code codebook/.test(gen.stdout),
      gen.stdout,
    );
    const img = await Image.decode(await Deno.readFile(png));
    assert(img.width === 2 * 32 + 3 * 2 && img.height === img.width, `${img.width}×${img.height}`);
  },
);
