/**
 * `deno run -A tasks/eval.ts` end to end on the CPU adapter: tiny checkpoints (random weights) and
 * a tiny Fashion-MNIST reference set (t10k + train files from the embedded subset) written here,
 * the shipped classifier; table and JSON fields present and sane, the floor below the untrained
 * model, --sweep into a table and a PNG plot, an unconditional checkpoint; and
 * `tasks/train_classifier.ts` on the fixture set, its file used by eval through --classifier.
 * (Bad input: the table of tests/robustness_test.ts.)
 */
import { join } from "node:path";
import { resolveConfig } from "../src/model/config.ts";
import { initParams, paramLayout } from "../src/model/params.ts";
import { encodeCheckpoint } from "../src/io/model_io.ts";
import { VQ_GREY_28 } from "./configs.ts";
import { initParams as initVqvaeParams, initState as initVqvaeState } from "../src/vqvae/params.ts";
import { encodeIdx, gzip, loadFashionMnistSubset } from "../src/data/fashion_mnist.ts";
import { balancedSubset } from "../src/eval/evaluate.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { decodeClassifier } from "../src/eval/classifier.ts";
import { assert, expectOk, runTask } from "./task_run.ts";

const evalTask = (args: string[]) => runTask("eval", args);

interface Fixture {
  dir: string;
  data: string;
  cond: string;
  uncond: string;
  latent: string; // a latent model: 2×7² latents, a VQ-VAE decoding them to 1×28²
}

let fixture: Promise<Fixture> | undefined;
function fixtures(): Promise<Fixture> {
  fixture ??= (async () => {
    const dir = await Deno.makeTempDir({ prefix: "flowgpu_eval_" });
    const data = join(dir, "fmnist");
    await Deno.mkdir(data);
    // 100 reference ("t10k") and 100 training images, 10 of each class, disjoint.
    const sub = await loadFashionMnistSubset();
    const idx = balancedSubset(sub.labels, 10, 200, 5);
    const parts = { t10k: idx.filter((_, i) => i % 2 === 0), train: idx.filter((_, i) => i % 2) };
    for (const [name, ids] of Object.entries(parts)) {
      const px = new Uint8Array(ids.length * 784), lb = new Uint8Array(ids.length);
      ids.forEach((j, i) => {
        px.set(sub.pixels.subarray(j * 784, (j + 1) * 784), i * 784);
        lb[i] = sub.labels[j];
      });
      await Deno.writeFile(
        join(data, `${name}-images-idx3-ubyte.gz`),
        await gzip(encodeIdx([ids.length, 28, 28], px)),
      );
      await Deno.writeFile(
        join(data, `${name}-labels-idx1-ubyte.gz`),
        await gzip(encodeIdx([ids.length], lb)),
      );
    }
    const rng = new Rng(TEST_SEED ^ 0xe7a1);
    const vq = VQ_GREY_28;
    const latent = {
      vqvae: { cfg: vq, params: initVqvaeParams(vq, 2), state: initVqvaeState(vq, 2) },
      scale: 1.5,
    };
    const write = async (name: string, K: number, lat?: typeof latent) => {
      const cfg = resolveConfig({
        preset: "tiny",
        image_size: lat ? 7 : 28,
        in_channels: lat ? 2 : 1,
        ...(lat ? { patch_size: 1 } : {}),
        num_classes: K,
      });
      const flat = initParams(cfg, 1);
      // Non-zero output layers (DiT zero-initialises them): the samples move off the noise.
      const noise = rng.normals(flat.length, 0.05);
      const pos = paramLayout(cfg).get("pos_embed");
      for (let i = 0; i < flat.length; i++) {
        if (i < pos.offset || i >= pos.offset + pos.length) flat[i] += noise[i];
      }
      const path = join(dir, `${name}.safetensors`);
      await Deno.writeFile(path, encodeCheckpoint({ cfg, params: flat, ema: flat, latent: lat }));
      return path;
    };
    return {
      dir,
      data,
      cond: await write("cond", 10),
      uncond: await write("uncond", 0),
      latent: await write("latent", 10, latent),
    };
  })();
  return fixture;
}

function jsonLine(stdout: string) {
  const line = stdout.split("\n").find((l) => l.startsWith("JSON: "));
  assert(line, `no JSON line in:\n${stdout}`);
  return JSON.parse(line.slice(6));
}

function saneScores(s: Record<string, number>, what: string, accuracy: boolean) {
  assert(Number.isFinite(s.fd) && s.fd >= 0, `${what}: FD ${s.fd}`);
  for (const k of ["precision", "recall"]) {
    assert(s[k] >= 0 && s[k] <= 1, `${what}: ${k} ${s[k]}`);
  }
  if (accuracy) assert(s.accuracy >= 0 && s.accuracy <= 1, `${what}: accuracy ${s.accuracy}`);
  else assert(!("accuracy" in s), `${what}: accuracy given for an unconditional model`);
}

Deno.test("eval: table, JSON line, progress and the floor (tiny checkpoint, fixture set)", async () => {
  const f = await fixtures();
  const r = await evalTask([
    ...["--checkpoint", f.cond, "--data", f.data],
    ...["--num-samples", "20", "--num_steps", "2"],
    ...["--batch", "10", "--seed", "3"],
  ]);
  expectOk(r, "eval");
  for (
    const row of ["FD", "class accuracy", "precision (k=3)", "recall (k=3)", "floor (20 real)"]
  ) {
    assert(r.stdout.includes(row), `table lacks "${row}":\n${r.stdout}`);
  }
  assert(
    /sampling \(euler 2 steps CFG 3\): 20\/20 images/.test(r.stdout),
    `progress:\n${r.stdout}`,
  );
  const j = jsonLine(r.stdout);
  assert(
    j.n === 20 && j.solver === "euler" && j.steps === 2 && j.cfg_scale === 3,
    `${JSON.stringify(j)}`,
  );
  assert(j.nfe === 2, `NFE ${j.nfe}`);
  assert(j.reference.n === 100, `reference of ${j.reference.n} images`);
  saneScores(j, "samples", true);
  saneScores(j.floor, "floor", true);
  // Real images of the same distribution score far better than an untrained model's samples.
  assert(j.floor.fd < j.fd, `floor FD ${j.floor.fd} is not below the samples' ${j.fd}`);
  assert(j.floor.accuracy > 0.6, `the classifier gets ${j.floor.accuracy} on real images`);
});

Deno.test("eval --sweep: one table, a JSON line, a PNG of FD against NFE", async () => {
  const f = await fixtures();
  const plot = join(f.dir, "sweep.png");
  const grid = join(f.dir, "grid.json");
  await Deno.writeTextFile(grid, JSON.stringify({ solvers: ["euler", "heun"], steps: [1, 2] }));
  const r = await evalTask([
    ...["--checkpoint", f.cond, "--data", f.data],
    ...["--num-samples", "20", "--batch", "20"],
    ...["--sweep-file", grid, "--sweep_cfg", "1"],
    ...["--plot", plot, "--no-floor"],
  ]);
  expectOk(r, "eval --sweep");
  const j = jsonLine(r.stdout);
  assert(j.sweep.length === 4 && !("floor" in j), `${JSON.stringify(j)}`);
  const key = (s: { solver: string; steps: number }) => `${s.solver}${s.steps}`;
  assert(j.sweep.map(key).join() === "euler1,euler2,heun1,heun2", j.sweep.map(key).join());
  for (const s of j.sweep) saneScores(s, key(s), true);
  assert(j.sweep[3].nfe > j.sweep[1].nfe, `heun NFE ${j.sweep[3].nfe} vs euler ${j.sweep[1].nfe}`);
  assert(r.stdout.includes("[4/4] heun 2 steps CFG 1"), `progress:\n${r.stdout}`);
  const png = await Deno.readFile(plot);
  assert(png[1] === 0x50 && png[2] === 0x4e && png[3] === 0x47 && png.length > 2000, "PNG");
});

Deno.test("eval: unconditional checkpoint has FD and P/R, no accuracy", async () => {
  const f = await fixtures();
  const r = await evalTask([
    ...["--checkpoint", f.uncond, "--data", f.data],
    ...["--num-samples", "12", "--num-steps", "1"],
    ...["--json", join(f.dir, "u.json")],
  ]);
  expectOk(r, "eval unconditional");
  assert(!r.stdout.includes("class accuracy"), "accuracy row for an unconditional model");
  const j = jsonLine(r.stdout);
  saneScores(j, "samples", false);
  saneScores(j.floor, "floor", false);
  const file = JSON.parse(await Deno.readTextFile(join(f.dir, "u.json")));
  assert(file.fd === j.fd, "--json file differs from the JSON line");
});

Deno.test("eval of a latent checkpoint scores its VQ-VAE's decoded images", async () => {
  const f = await fixtures();
  const r = await evalTask([
    ...["--checkpoint", f.latent, "--data", f.data],
    ...["--num-samples", "12", "--num-steps", "2", "--no-floor"],
  ]);
  expectOk(r, "eval latent");
  assert(/latent \(2×7², decoded by its VQ-VAE\)/.test(r.stdout), r.stdout);
  assert(/sampling \(euler 2 steps CFG 3\): 12\/12 images/.test(r.stdout), r.stdout);
  const j = jsonLine(r.stdout);
  assert(j.n === 12 && j.nfe === 2, JSON.stringify(j));
  saneScores(j, "latent samples", true);
});

Deno.test("train-classifier on the fixture set: an epoch line each, a file eval scores with", async () => {
  const f = await fixtures();
  const cwd = await Deno.makeTempDir({ prefix: "flowgpu_clf_" });
  const args = ["--data", f.data, "--epochs", "2", "--batch-size", "25", "--warmup", "2"];
  const r = await runTask("train_classifier", args, cwd);
  expectOk(r, "train-classifier");
  // 100 training images (a warning: not the full set), 4 steps an epoch
  assert(/warning: only 100 training images/.test(r.stderr), r.stderr);
  const epochs = r.stdout.split("\n").filter((l) => /^epoch \d\/2 +loss/.test(l));
  assert(epochs.length === 2 && /2 epochs = 8 steps/.test(r.stdout), r.stdout);
  const m = r.stdout.match(/wrote fashion-mnist-classifier\.safetensors: test accuracy ([\d.]+)%/);
  assert(m, `no output line:\n${r.stdout}`);
  const path = join(cwd, "fashion-mnist-classifier.safetensors");
  const w = decodeClassifier(await Deno.readFile(path));
  assert(
    Math.abs(100 * w.info.test_accuracy! - Number(m[1])) < 0.006 &&
      w.info.command?.includes("--epochs 2"),
    JSON.stringify(w.info),
  );
  const e = await runTask("eval", [
    ...["--checkpoint", f.uncond, "--data", f.data, "--classifier", path],
    ...["--num-samples", "12", "--num-steps", "1", "--no-floor"],
  ]);
  expectOk(e, "eval with the new classifier");
  const j = jsonLine(e.stdout);
  assert(j.classifier.name === path && !("floor" in j), JSON.stringify(j));
  await Deno.remove(cwd, { recursive: true });
});
