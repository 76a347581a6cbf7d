/**
 * The tasks as a new user meets them on a fresh headless machine (no XDG_RUNTIME_DIR, no
 * terminal), with bad input: a table of bad command lines → one-line errors with exit code 2,
 * nothing written and no GPU started; two runs with one name; SIGTERM; `--resume auto` past a
 * corrupt checkpoint and temporary files of a hard kill; default output names; honest bench
 * figures.
 */
import { getGpu } from "../src/gpu/device.ts";
import { join } from "node:path";
import {
  decodeCheckpoint,
  encodeCheckpoint,
  encodeVqvaeCheckpoint,
  initParams,
  initVqvaeParams,
  initVqvaeState,
  paramLayout,
  resolveConfig,
  resolveVqvaeConfig,
} from "../mod.ts";
import { openNewRun } from "../tasks/run_dir.ts";
import { TINY_8 as CFG, VQ_GREY_28 as VQ } from "./configs.ts";
import {
  assert,
  expectOk,
  expectOneLineError,
  headlessEnv,
  listTree,
  type Result,
  runTask,
  taskCommand,
} from "./task_run.ts";

interface Fixture {
  root: string;
  model: string; // weights and EMA only: samples, cannot resume
  finished: string; // a run directory holding a finished 5-step run
  corrupt: string;
  afile: string; // a regular file, to put paths under
  emptyRun: string;
  model28: string; // a 28×28 model, as the evaluation classifier takes
  vqRun: string; // a run directory holding a finished 5-step VQ-VAE run
  vqvae: string; // its final training checkpoint
  vqFlipped: string; // it with one bit of tensor data flipped
  vqTruncated: string;
  vq32: string; // a VQ-VAE of 3×32² images
  latentBad: string; // a latent flow checkpoint whose VQ-VAE does not make its input
}

let fixture: Promise<Fixture> | undefined;
function fixtures(): Promise<Fixture> {
  fixture ??= (async () => {
    const root = await Deno.makeTempDir({ prefix: "flowgpu_robust_" });
    const params = initParams(CFG, 1), ema = initParams(CFG, 2);
    const model = join(root, "model.safetensors");
    await Deno.writeFile(model, encodeCheckpoint({ cfg: CFG, params, ema }));
    const finished = join(root, "finished");
    await Deno.mkdir(join(finished, "checkpoints"), { recursive: true });
    const n = paramLayout(CFG).total;
    const state = { step: 5, options: { preset: "tiny", train_steps: 5 } };
    await Deno.writeFile(
      join(finished, "checkpoints", "final.safetensors"),
      encodeCheckpoint({
        cfg: CFG,
        params,
        ema,
        m: new Float32Array(n).fill(1e-3),
        v: new Float32Array(n).fill(1e-6),
        state: state as never,
      }),
    );
    const corrupt = join(root, "corrupt.safetensors");
    await Deno.writeTextFile(corrupt, "this is not a safetensors file");
    const afile = join(root, "afile");
    await Deno.writeTextFile(afile, "a regular file\n");
    const emptyRun = join(root, "empty_run");
    await Deno.mkdir(emptyRun);
    const cfg28 = resolveConfig({
      preset: "tiny",
      image_size: 28,
      in_channels: 1,
      num_classes: 10,
    });
    const model28 = join(root, "model28.safetensors");
    await Deno.writeFile(model28, encodeCheckpoint({ cfg: cfg28, params: initParams(cfg28, 3) }));
    const vqRun = join(root, "vq_run");
    await Deno.mkdir(join(vqRun, "checkpoints"), { recursive: true });
    const vqvae = join(vqRun, "checkpoints", "final.safetensors");
    const vqParams = initVqvaeParams(VQ, 0);
    const vqBytes = encodeVqvaeCheckpoint({
      cfg: VQ,
      params: vqParams,
      state: initVqvaeState(VQ, 0),
      m: new Float32Array(vqParams.length).fill(1e-3),
      v: new Float32Array(vqParams.length).fill(1e-6),
      train: { step: 5, options: { codebook_size: 16, train_steps: 5 } } as never,
    });
    await Deno.writeFile(vqvae, vqBytes);
    const vqFlipped = join(root, "vq_flipped.safetensors");
    const flipped = vqBytes.slice();
    flipped[flipped.length - 100] ^= 0x40;
    await Deno.writeFile(vqFlipped, flipped);
    const vqTruncated = join(root, "vq_truncated.safetensors");
    await Deno.writeFile(vqTruncated, vqBytes.subarray(0, 1000));
    const VQ32 = resolveVqvaeConfig({ ...VQ, image_size: 32, in_channels: 3 });
    const vq32 = join(root, "vq32.safetensors");
    const p32 = initVqvaeParams(VQ32, 0), s32 = initVqvaeState(VQ32, 0);
    await Deno.writeFile(vq32, encodeVqvaeCheckpoint({ cfg: VQ32, params: p32, state: s32 }));
    const latentBad = join(root, "latent_bad.safetensors");
    const latent = { vqvae: { cfg: VQ, params: vqParams, state: initVqvaeState(VQ, 0) }, scale: 1 };
    await Deno.writeFile(latentBad, encodeCheckpoint({ cfg: CFG, params, latent }));
    return {
      vq32,
      latentBad,
      root,
      model,
      finished,
      corrupt,
      afile,
      emptyRun,
      model28,
      vqRun,
      vqvae,
      vqFlipped,
      vqTruncated,
    };
  })();
  return fixture;
}

/** Run `task args` in a fresh empty folder; return the result and what the folder holds after. */
async function inFreshDir(task: string, args: string[]): Promise<Result & { tree: string[] }> {
  const cwd = await Deno.makeTempDir({ prefix: "flowgpu_case_" });
  const r = await runTask(task, args, cwd);
  const tree = await listTree(cwd);
  await Deno.remove(cwd, { recursive: true });
  return { ...r, tree };
}

/** Run the cases four at a time. */
async function pool<T>(items: T[], fn: (x: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (queue.length) await fn(queue.shift()!);
  }));
}

Deno.test("bad input: one line, exit 2, nothing written, no GPU started", async () => {
  const f = await fixtures();
  const cfgFile = async (name: string, text: string) => {
    const p = join(f.root, name);
    await Deno.writeTextFile(p, text);
    return p;
  };
  const ck = ["--checkpoint", f.model], ck28 = ["--checkpoint", f.model28];
  const cases: [string, string[], RegExp][] = [
    // train: ranges, negative numbers as values, types, names
    ["train", ["--steps", "0"], /--steps must be ≥ 1, got 0$/],
    ["train", ["--steps", "-5"], /--steps must be ≥ 1, got -5$/],
    ["train", ["--steps=-5"], /--steps must be ≥ 1, got -5$/],
    ["train", ["--train_steps", "2.5"], /--train_steps expects an integer, got '2\.5'/],
    ["train", ["--lr=-1"], /--lr must be > 0, got -1$/],
    ["train", ["--lr", "-1"], /--lr must be > 0, got -1$/],
    ["train", ["--lr", "abc"], /--lr expects a number, got 'abc'/],
    ["train", ["--batch-size", "0"], /--batch-size must be ≥ 1, got 0$/],
    ["train", ["--cfg-scale", "-1"], /--cfg-scale must be ≥ 0, got -1$/],
    ["train", ["--label-dropout", "1.5"], /--label-dropout must be in \[0, 1\], got 1\.5/],
    ["train", ["--beta2", "1"], /--beta2 must be in \[0, 1\), got 1/],
    ["train", ["--warmup", "-1"], /--warmup must be ≥ 0/],
    ["train", ["--seed", "-1"], /--seed must be in \[0, 4294967295\]/],
    ["train", ["--log-every", "0"], /--log-every must be ≥ 1/],
    ["train", ["--sample-every", "-1"], /--sample-every must be ≥ 0/],
    ["train", ["--in-channels", "2"], /--in-channels must be 1 or 3, got 2/],
    ["train", ["--preset", "XL"], /--preset must be one of tiny, small, S, B, L, got 'XL'/],
    ["train", ["--bogus"], /unknown option '--bogus'/],
    ["train", ["--steps"], /--steps needs a value/],
    ["train", ["stray"], /unexpected argument 'stray'/],
    ["train", ["--name", "../escape"], /--name must be a folder name/],
    ["train", ["--time-limit", "-1"], /--time-limit must be ≥ 0, got -1$/],
    ["train_vqvae", ["--time-limit", "x"], /--time-limit expects a number, got 'x'/],
    // train: places and files, named in the message
    ["train", ["--out", join(f.afile, "runs")], /--out .*afile\/runs: .*afile is a file/],
    ["train", ["--data", join(f.root, "nope")], /--data .*nope: no such folder/],
    ["train", ["--config", join(f.root, "missing.json")], /--config .*missing\.json: no such file/],
    ["train", ["--config", await cfgFile("broken.json", "{ lr: ")], /broken\.json: not valid JSON/],
    ["train", ["--config", await cfgFile("array.json", "[1]")], /array\.json: expected a JSON obj/],
    [
      "train",
      ["--config", await cfgFile("unknown.json", '{"learning_rate": 1}')],
      /unknown\.json: unknown option "learning_rate"/,
    ],
    [
      "train",
      ["--config", await cfgFile("type.json", '{"lr": "fast"}')],
      /type\.json: "lr" expects a number, got 'fast'/,
    ],
    [
      "train",
      ["--config", await cfgFile("range.json", '{"steps": 0}')],
      /range\.json: "steps" must be ≥ 1, got 0/,
    ],
    [
      "train",
      ["--config", await cfgFile("choice.json", '{"preset": "XL"}')],
      /choice\.json: "preset" must be one of/,
    ],
    // train: resuming and run directories
    ["train", ["--resume", join(f.root, "nothing")], /--resume .*nothing: no such file/],
    ["train", ["--resume", f.corrupt], /--resume .*corrupt\.safetensors: safetensors/],
    ["train", ["--resume", f.model], /--resume .*model\.safetensors: not a training checkpoint/],
    ["train", ["--resume", "auto", "--out", f.emptyRun], /--resume auto: no checkpoint under/],
    ["train", ["--resume", "auto", "--overwrite"], /give only one/],
    ["train", ["--resume", f.finished, "--preset", "S"], /--preset S: the checkpoint's model/],
    [
      "train",
      ["--out", f.root, "--name", "finished"],
      /finished already holds a finished run; train it further with --resume .* --steps N/,
    ],
    // train and train-vqvae: each other's checkpoints
    ["train", ["--resume", f.vqvae], /final\.safetensors: a VQ-VAE checkpoint: .* --vqvae/],
    ["train", ["--resume", f.vqRun], /no checkpoint of this task's model there \(1 of another/],
    ["train_vqvae", ["--resume", f.model], /model\.safetensors: not a VQ-VAE checkpoint.*DiT/],
    ["train_vqvae", ["--resume", f.finished], /no checkpoint of this task's model there/],
    // train --vqvae: corrupt, mismatched or misplaced VQ-VAE checkpoints
    [
      "train",
      ["--vqvae", join(f.root, "nope.safetensors")],
      /--vqvae .*nope\.safetensors: no such/,
    ],
    ["train", ["--vqvae", f.corrupt], /--vqvae .*corrupt\.safetensors: .*not a safetensors file/],
    ["train", ["--vqvae", f.vqFlipped], /--vqvae .*vq_flipped\.safetensors: .*checksum/i],
    ["train", ["--vqvae", f.vqTruncated], /--vqvae .*vq_truncated\.safetensors: .*corrupt/],
    [
      "train",
      ["--vqvae", f.model],
      /--vqvae .*model\.safetensors: not a VQ-VAE checkpoint.*give a train-vqvae checkpoint/,
    ],
    ["train", ["--vqvae", f.emptyRun], /--vqvae .*empty_run: no checkpoints\/final\.safetensors/],
    ["train", ["--vqvae", f.vqRun, "--hflip"], /--hflip flips images, not latents/],
    [
      "train",
      ["--resume", f.finished, "--steps", "10", "--vqvae", f.vqvae],
      /--vqvae .*: .*final\.safetensors is a pixel-space model/,
    ],
    // train-vqvae: options, files, resuming
    ["train_vqvae", ["--bogus"], /unknown option '--bogus'/],
    ["train_vqvae", ["--codebook-size", "x"], /--codebook-size expects a number, got 'x'/],
    ["train_vqvae", ["--codebook-size", "1"], /--codebook-size must be ≥ 2, got 1/],
    ["train_vqvae", ["--act", "gelu"], /--act must be one of silu, relu, got 'gelu'/],
    ["train_vqvae", ["--channels", "5"], /--channels must be even, got 5/],
    ["train_vqvae", ["--image-size", "30"], /--image-size must be a multiple of 4, got 30/],
    ["train_vqvae", ["--ema-decay", "1"], /--ema-decay must be in \[0, 1\), got 1/],
    ["train_vqvae", ["--dataset", "mnist"], /--dataset must be one of fashion-mnist, /],
    ["train_vqvae", ["--data", join(f.root, "nope")], /--data .*nope: no such folder/],
    ["train_vqvae", ["--out", join(f.afile, "runs")], /--out .*afile\/runs: .*afile is a file/],
    [
      "train_vqvae",
      ["--config", await cfgFile("vq_bench.json", '{"bench": true}')],
      /vq_bench\.json: unknown option "bench"/,
    ],
    ["train_vqvae", ["--resume", join(f.root, "nothing")], /--resume .*nothing: no such file/],
    ["train_vqvae", ["--resume", f.corrupt], /corrupt\.safetensors: .*not a safetensors file/],
    ["train_vqvae", ["--resume", f.vqFlipped], /vq_flipped\.safetensors: .*checksum/i],
    ["train_vqvae", ["--resume", f.vqTruncated], /vq_truncated\.safetensors: .*corrupt/],
    [
      "train_vqvae",
      ["--resume", f.vqvae, "--codebook-size", "32"],
      /--codebook-size 32: the checkpoint's model has 16/,
    ],
    // data
    ["data", [], /name a dataset: deno task data emoji/],
    ["data", ["mnist"], /unknown dataset "mnist" \(known: emoji\)/],
    ["data", ["emoji", "--image-size", "65"], /--image-size must be in \[1, 64\], got 65/],
    // generate
    ["generate", [], /--checkpoint is required/],
    ["generate", ["--checkpoint", join(f.root, "nope.safetensors")], /no such file/],
    ["generate", ["--checkpoint", f.emptyRun], /no checkpoints\/final\.safetensors/],
    ["generate", ["--checkpoint", f.corrupt], /corrupt\.safetensors: safetensors/],
    ["generate", [...ck, "--class_label", "-1"], /--class_label must be ≥ 0, got -1/],
    ["generate", [...ck, "--class_label", "3"], /--class-label 3 out of range.*0\.\.2/],
    ["generate", [...ck, "--cfg_scale", "-1"], /--cfg_scale must be ≥ 0, got -1/],
    ["generate", [...ck, "--num_samples", "0"], /--num_samples must be in \[1, 100000\]/],
    ["generate", [...ck, "--num_steps=-2"], /--num_steps must be ≥ 1, got -2/],
    ["generate", [...ck, "--solver", "leapfrog"], /--solver must be one of/],
    ["generate", [...ck, "--guidance_interval", "0.8,0.2"], /--guidance_interval expects a,b/],
    ["generate", [...ck, "--out", join(f.afile, "x.png")], /--out .*afile\/x\.png: .*is a file/],
    ["generate", [...ck, "--out", join(f.root, "no", "x.png")], /folder .*no does not exist/],
    ["generate", [...ck, "--out", "grid.jpg"], /--out grid\.jpg: .*ending in \.png/],
    ["generate", [...ck, "--separate", "--out", join(f.afile, "d")], /afile is a file/],
    // eval: ranges and lists before anything is read, then the files it reads and writes
    ["eval", [], /--checkpoint is required/],
    ["eval", ["--checkpoint", join(f.root, "nope")], /--checkpoint .*nope: no such file/],
    ["eval", ["--checkpoint", f.corrupt], /corrupt\.safetensors: safetensors/],
    ["eval", ["--checkpoint", f.emptyRun], /no checkpoints\/final\.safetensors/],
    ["eval", [...ck28, "--num-samples", "3"], /--num-samples must be in \[4, 100000\], got 3/],
    ["eval", [...ck28, "--num_steps=-1"], /--num_steps must be ≥ 1, got -1/],
    ["eval", [...ck28, "--cfg-scale", "-1"], /--cfg-scale must be ≥ 0, got -1/],
    ["eval", [...ck28, "--solver", "rk5"], /--solver must be one of/],
    ["eval", [...ck28, "--batch", "0"], /--batch must be ≥ 1, got 0/],
    ["eval", [...ck28, "--sweep-solvers", "euler,rk5"], /solvers: unknown solver 'rk5'/],
    ["eval", [...ck28, "--sweep_steps", "10,0"], /step count '0' is not an integer ≥ 1/],
    ["eval", [...ck28, "--sweep-cfg", "1,x"], /CFG scale 'x' is not a number ≥ 0/],
    [
      "eval",
      [...ck28, "--sweep-file", join(f.root, "missing.json")],
      /--sweep-file .*missing\.json: no such file/,
    ],
    [
      "eval",
      [...ck28, "--sweep-file", await cfgFile("grid1.json", '{"solvers": ["rk5"]}')],
      /grid1\.json: "solvers" has unknown solver 'rk5'/,
    ],
    [
      "eval",
      [...ck28, "--sweep-file", await cfgFile("grid2.json", '{"nfe": [10]}')],
      /grid2\.json: unknown key "nfe"/,
    ],
    ["eval", [...ck, "--data", f.root], /classifier takes 784 values/],
    ["eval", [...ck28, "--classifier", f.corrupt], /--classifier .*corrupt\.safetensors: safet/],
    ["eval", [...ck28, "--classifier", f.model], /not a classifier file/],
    ["eval", [...ck28, "--classifier", join(f.root, "no.safetensors")], /no such file/],
    ["eval", [...ck28, "--plot", "fd.png"], /--plot: the plot is of a --sweep/],
    ["eval", [...ck28, "--sweep", "--plot", "fd.jpg"], /--plot fd\.jpg: .*ending in \.png/],
    ["eval", [...ck28, "--json", join(f.afile, "r.json")], /--json .*afile is a file/],
    ["eval", [...ck28, "--data", f.root], /--data .*: no t10k-images/],
    // train-classifier (tasks/train_classifier.ts)
    ["train_classifier", ["--epochs", "0"], /--epochs must be ≥ 1, got 0/],
    ["train_classifier", ["--lr", "-1"], /--lr must be > 0, got -1/],
    ["train_classifier", ["--batch_size", "0"], /--batch_size must be ≥ 1, got 0/],
    ["train_classifier", ["--weight-decay", "-0.1"], /--weight-decay must be ≥ 0/],
    ["train_classifier", ["--out", "clf.bin"], /--out clf\.bin: .*ending in \.safetensors/],
    ["train_classifier", ["--out", join(f.afile, "c.safetensors")], /afile is a file/],
    ["train_classifier", ["--data", f.root], /--data .*: no t10k-images/],
    // export-weights (tasks/export_weights.ts)
    ["export_weights", [], /--checkpoint is required/],
    ["export_weights", ["--checkpoint", join(f.root, "nope")], /nope: no such file/],
    ["export_weights", ["--checkpoint", f.corrupt], /corrupt\.safetensors: safetensors/],
    ["export_weights", ["--checkpoint", f.emptyRun], /no checkpoints\/final\.safetensors/],
    ["export_weights", [...ck, "--out", "w.bin"], /--out w\.bin: .*ending in \.safetensors/],
    ["export_weights", [...ck, "--out", join(f.afile, "w.safetensors")], /afile is a file/],
    ["export_weights", [...ck, "--ema"], /unknown option '--ema'/],
    ["generate", [...ck, "--no-quantize"], /--no-quantize: this checkpoint is a pixel-space model/],
    [
      "generate",
      ["--checkpoint", f.vqRun],
      /a VQ-VAE checkpoint \(train-vqvae's\), not a flow model/,
    ],
    [
      "generate",
      ["--checkpoint", f.latentBad],
      /latent_bad\.safetensors: checkpoint: its VQ-VAE \(latent space\): it makes 2×7² latents, the model is 1×8²/,
    ],
    // bench
    ["bench", ["--batch-size", "0"], /--batch-size must be ≥ 1/],
    ["bench", ["--skip", "step,foo"], /--skip has unknown part\(s\) foo/],
    ["bench", ["--iters=-1"], /--iters must be ≥ 1, got -1/],
  ];
  const before = await listTree(f.root);
  await pool(cases, async ([task, args, pattern]) => {
    const what = `${task} ${args.join(" ")}`;
    const r = await inFreshDir(task, args);
    expectOneLineError(r, what, pattern, 2);
    assert(!r.stderr.includes(".tmp"), `${what}: names a temporary file: ${r.stderr}`);
    assert(r.tree.length === 0, `${what}: wrote ${r.tree}`);
    assert(!r.stdout.includes("adapter:"), `${what}: started the GPU before refusing`);
  });
  const after = await listTree(f.root);
  assert(after.join() === before.join(), `the fixtures changed: ${after}`);
});

Deno.test("refused after the GPU start (model vs data), and a finished run: nothing written", async () => {
  const f = await fixtures();
  const out = join(f.root, "refused");
  const r = await inFreshDir("train", [
    ...["--preset", "tiny", "--dataset", "default", "--num-classes", "5", "--out", out],
  ]);
  expectOneLineError(r, "5 classes for 10", /the dataset has 10 classes, the model 5/, 2);
  assert(r.tree.length === 0 && !(await listTree(f.root)).includes("refused"), "wrote files");
  // a VQ-VAE of other images than the dataset's (resized to its 32², but grey)
  const v = await inFreshDir("train", ["--vqvae", f.vq32, "--dataset", "default", "--out", out]);
  expectOneLineError(
    v,
    "VQ-VAE of 3×32² on 1×28²",
    /the VQ-VAE of .*vq32\.safetensors encodes 3×32² images, --dataset default has 1×32²/,
    2,
  );
  assert(v.tree.length === 0 && !(await listTree(f.root)).includes("refused"), "wrote files");
  // --resume of a finished run: a hint at --steps, exit 0, nothing touched, no GPU
  const done = await inFreshDir("train", ["--resume", f.finished]);
  expectOk(done, "--resume a finished run");
  assert(/at step 5, the run's total is 5: nothing to train/.test(done.stdout), done.stdout);
  assert(/--resume \S+final\.safetensors --steps 10/.test(done.stdout), done.stdout);
  assert(!done.stdout.includes("adapter:") && done.tree.length === 0, "started or wrote");
  const vqDone = await inFreshDir("train_vqvae", ["--resume", f.vqRun]);
  expectOk(vqDone, "--resume a finished VQ-VAE run");
  assert(/train-vqvae --resume \S+final\.safetensors --steps 10/.test(vqDone.stdout), "hint");
  assert(!vqDone.stdout.includes("adapter:") && vqDone.tree.length === 0, "started or wrote");
});

interface Row {
  step: number;
  loss: number;
}
const metrics = async (dir: string): Promise<Row[]> =>
  (await Deno.readTextFile(join(dir, "metrics.jsonl")).catch(() => "")).split("\n")
    .filter((l) => l.trim()).map((l) => JSON.parse(l));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exists = (p: string) => Deno.lstat(p).then(() => true, () => false);

/** Training flags for short CPU runs (a long --steps: these runs end by signal or resume). */
const SHORT = [
  ...["--preset", "tiny", "--dataset", "default", "--batch-size", "2", "--lr", "3e-3"],
  ...["--warmup", "2", "--log-every", "1", "--sample-every", "0", "--ckpt-every", "0"],
];

/** Spawned runs, decoded when they end. */
function spawn(args: string[], cwd?: string) {
  const child = taskCommand("train", args, cwd).spawn();
  const dec = new TextDecoder();
  const result = child.output().then((o) => ({
    code: o.code,
    stdout: dec.decode(o.stdout),
    stderr: dec.decode(o.stderr),
  }));
  return { pid: child.pid, kill: (s: Deno.Signal) => child.kill(s), result };
}

/** The run of the SIGTERM test, shared with the resume test. */
let termRun: Promise<{ out: string; dir: string; step: number }> | undefined;

function sigtermRun() {
  termRun ??= (async () => {
    const out = join((await fixtures()).root, "runs");
    const dir = join(out, "same");
    // an earlier interrupted run of the same name, replaced by --overwrite
    await Deno.mkdir(join(dir, "checkpoints"), { recursive: true });
    await Deno.writeTextFile(join(dir, "checkpoints", "step_000999.safetensors"), "old");
    await Deno.writeTextFile(join(dir, "metrics.jsonl"), '{"step": 999, "loss": 1}\n');
    // two runs of one name started together: one trains, the other stops naming its PID
    const args = [...SHORT, "--steps", "100000", "--out", out, "--name", "same", "--overwrite"];
    const a = spawn(args), b = spawn(args);
    const first = await Promise.race([a.result.then(() => a), b.result.then(() => b)]);
    const [loser, winner] = first === a ? [a, b] : [b, a];
    const lr = await loser.result;
    expectOneLineError(lr, "the second run", new RegExp(`in use by process ${winner.pid}\\b`), 2);
    const t0 = performance.now();
    while (!(await metrics(dir)).some((r) => r.step >= 3)) {
      if (performance.now() - t0 > 240_000) throw new Error("no step 3 in 240 s");
      await sleep(50);
    }
    assert(!(await exists(join(out, "latest"))), "runs/latest moved before any checkpoint");
    assert(!(await exists(join(dir, "checkpoints", "step_000999.safetensors"))), "old run kept");
    winner.kill("SIGTERM");
    const r = await winner.result;
    assert(r.code === 143, `exit ${r.code} after SIGTERM:\n${r.stdout}\n${r.stderr}`);
    expectOk({ ...r, code: 0 }, "SIGTERM run");
    assert(!r.stdout.includes("\r"), "progress lines use \\r when stdout is not a terminal");
    const m = r.stdout.match(
      /checkpoint: (\S+step_(\d+)\.safetensors)\nresume with: .*--resume \1/,
    );
    assert(m, `no checkpoint/resume lines:\n${r.stdout}`);
    const step = Number(m[2]);
    const ck = decodeCheckpoint(await Deno.readFile(m[1]));
    assert(ck.state?.step === step && ck.m && ck.v && ck.ema, "interrupted checkpoint");
    const rows = await metrics(dir);
    assert(
      rows.map((x) => x.step).join() === Array.from({ length: step }, (_, i) => i + 1).join(),
      `metrics steps ${rows.map((x) => x.step)}`,
    );
    assert(await Deno.readLink(join(out, "latest")) === "same", "runs/latest → same");
    const left = (await listTree(dir)).filter((p) => p.endsWith(".tmp"));
    assert(left.length === 0, `temporary files left: ${left}`);
    console.log(`  loser exited with: ${lr.stderr.trim()}; SIGTERM at step ${step}`);
    return { out, dir, step };
  })();
  return termRun;
}

Deno.test("two runs of one name: one trains, one stops naming the PID; SIGTERM checkpoints, exit 143", async () => {
  await sigtermRun();
});

Deno.test("--resume auto falls back past a corrupt checkpoint and removes a hard kill's temporary files", async () => {
  const { out, dir, step } = await sigtermRun();
  const bad = join(dir, "checkpoints", `step_${String(step + 1).padStart(6, "0")}.safetensors`);
  await Deno.writeTextFile(bad, "cut short by a crash");
  const temps = [
    join(dir, "checkpoints", ".step_000123.safetensors.k1ll3d.tmp"),
    join(dir, ".loss.png.k1ll3d.tmp"),
  ];
  for (const t of temps) await Deno.writeTextFile(t, "partial");
  const r = await runTask("train", ["--resume", "auto", "--out", out, "--steps", String(step + 2)]);
  expectOk(r, "--resume auto");
  const warnings = r.stderr.trim().split("\n");
  assert(
    warnings.length === 1 && warnings[0].startsWith("warning: ") && warnings[0].includes(bad),
    `want one warning naming ${bad}:\n${r.stderr}`,
  );
  assert(r.stdout.includes(`resumed from ${join(dir, "checkpoints")}`), r.stdout);
  assert(new RegExp(`at step ${step}\\b`).test(r.stdout), r.stdout);
  assert(/removed 2 temporary file/.test(r.stdout), r.stdout);
  assert(new RegExp(`done: ${step + 2} steps`).test(r.stdout), r.stdout);
  for (const t of temps) assert(!(await exists(t)), `${t} is still there`);
  const rows = await metrics(dir);
  assert(
    rows.map((x) => x.step).join() === Array.from({ length: step + 2 }, (_, i) => i + 1).join(),
    `metrics steps ${rows.map((x) => x.step)}`,
  );
});

Deno.test("generate: default names never overwrite, identical bytes, one progress line per update", async () => {
  const f = await fixtures();
  const cwd = await Deno.makeTempDir({ prefix: "flowgpu_gen_names_" });
  const args = ["--checkpoint", f.model, "--num_samples", "5", "--num_steps", "2", "--batch", "2"];
  const r1 = await runTask("generate", args, cwd);
  const r2 = await runTask("generate", args, cwd);
  expectOk(r1, "first generate");
  expectOk(r2, "second generate");
  assert(/wrote samples\.png/.test(r1.stdout) && /wrote samples-2\.png/.test(r2.stdout), r2.stdout);
  const a = await Deno.readFile(join(cwd, "samples.png"));
  const b = await Deno.readFile(join(cwd, "samples-2.png"));
  assert(a.length === b.length && a.every((x, i) => x === b[i]), "same pixels, other bytes");
  assert(!r1.stdout.includes("\r"), "\\r in a non-terminal progress line");
  const progress = r1.stdout.split("\n").filter((l) => l.startsWith("generated "));
  assert(
    progress.length >= 1 && progress[progress.length - 1].startsWith("generated 5/5"),
    r1.stdout,
  );
  // 3 batches (2 + 2 + 1 images) × 2 Euler steps = 6 evaluations in all
  assert(/6 model evaluations in all \(3 batches/.test(r1.stdout), r1.stdout);
  await Deno.remove(cwd, { recursive: true });
});

Deno.test("bench on this adapter: no GPU time without timestamps, memory in real units", async () => {
  const f16 = (await getGpu()).features.has("shader-f16");
  const precisions = f16 ? ["f32", "f16"] : ["f32"];
  const r = await runTask("bench", [
    ...["--skip", "sample,linear", "--iters", "1", "--repeats", "1", "--batch-size", "2"],
    ...["--precision", precisions.join(",")],
  ]);
  expectOk(r, "bench");
  const json = JSON.parse(r.stdout.split("\n").find((l) => l.startsWith("JSON: "))!.slice(6));
  const { preset: _p, batch_size: _b, ...model } = json.config;
  const cfg = resolveConfig(model);
  assert(
    json.runs.map((x: { precision: string }) => x.precision).join() === precisions.join(),
    "runs",
  );
  for (const run of json.runs) {
    const p = run.precision;
    // weights, gradients, Adam m and v, EMA (f32), plus the f16 weight copy in f16
    const flat = paramLayout(cfg).total * (4 * 5 + (p === "f16" ? 2 : 0));
    assert(run.step.memory_bytes > flat, `${p} memory ${run.step.memory_bytes} ≤ ${flat}`);
    assert(run.step.host_ms > 0 && run.step.submit_ms >= 0, `${p} host time ${run.step.host_ms}`);
    const line = r.stdout.split("\n").find((l) => l.startsWith(`training step (${p}):`))!;
    const shown = Number(line.match(/([\d.]+) MiB of buffers/)?.[1]);
    assert(Math.abs(shown - run.step.memory_bytes / 2 ** 20) < 0.06, `shown ${line}`);
    if (run.step.gpu_ms !== null) {
      // a GPU time is the step's share of a submission timed on the wall clock too
      assert(json.timestamps && run.step.gpu_ms > 0, `GPU time ${run.step.gpu_ms}`);
      assert(/\(GPU [\d.]+ ms; wall\/GPU [\d.]+\)/.test(line), line);
    } else {
      assert(/no GPU time: /.test(line) && /breakdown: skipped/.test(r.stdout), r.stdout);
    }
  }
});

Deno.test("unnamed runs started in the same second get their own directories", async () => {
  const out = await Deno.makeTempDir({ prefix: "flowgpu_names_" });
  for (let attempt = 0;; attempt++) {
    const runs = await Promise.all([openNewRun(out), openNewRun(out), openNewRun(out)]);
    const names = runs.map((r) => r.dir.slice(out.length + 1)).sort();
    const base = names[0];
    for (const r of runs) r.release();
    for (const n of names) await Deno.remove(join(out, n), { recursive: true });
    // (a second boundary between the three: try again)
    if (!names.every((n) => n.startsWith(base)) && attempt < 3) continue;
    assert(/^\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d$/.test(base), `name ${base}`);
    assert(names.join() === [base, `${base}-2`, `${base}-3`].join(), `names ${names}`);
    break;
  }
  const one = await openNewRun(out, "x");
  const pid = (await Deno.readTextFile(join(one.dir, ".lock"))).trim();
  assert(pid === String(Deno.pid), `.lock holds '${pid}'`);
  one.release();
  await Deno.remove(out, { recursive: true });
});

Deno.test("getGpu on a headless machine: a private XDG_RUNTIME_DIR, no driver noise, removed at exit", async () => {
  const device = new URL("../src/gpu/device.ts", import.meta.url).href;
  const script = `
    import { getGpu } from ${JSON.stringify(device)};
    await getGpu();
    const dir = Deno.env.get("XDG_RUNTIME_DIR");
    console.log(JSON.stringify({ dir, mode: Deno.statSync(dir).mode & 0o777 }));`;
  for (const value of [undefined, "", "relative/path", "/no/such/folder"]) {
    const env = headlessEnv();
    if (value !== undefined) env.XDG_RUNTIME_DIR = value;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", script],
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.success && stderr.trim() === "", `XDG_RUNTIME_DIR=${value}: stderr\n${stderr}`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert(
      r.dir.startsWith("/") && r.mode === 0o700,
      `XDG_RUNTIME_DIR=${value}: ${r.dir} ${r.mode}`,
    );
    assert(!(await exists(r.dir)), `${r.dir} left behind`);
  }
});
