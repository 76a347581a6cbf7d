/**
 * Learning-rate and EMA schedules against their closed forms; the option table (defaults, ranges,
 * flag and --config parsing, --help).
 */
import assert from "node:assert/strict";
import { GPU_DEFAULTS, type TrainOptions } from "../src/train/options.ts";
import { emaDecayAt, learningRate } from "../src/train/schedule.ts";
import {
  checkOption,
  CPU_DEFAULTS,
  defaultPrecision,
  type Gpu,
  OptionError,
  type OptionSpec,
  precisionProblem,
  TRAIN_OPTIONS,
  validateTrainOptions,
} from "../mod.ts";
import { helpText, parseFlags, readConfigFile, UsageError } from "../tasks/cli.ts";

const close = (a: number, b: number) =>
  assert.ok(Math.abs(a - b) <= 1e-12 * Math.max(1, Math.abs(b)), `${a} != ${b}`);

Deno.test("linear warmup then constant", () => {
  const o: TrainOptions = { ...GPU_DEFAULTS, lr: 3e-4, warmup: 100, train_steps: 1000 };
  close(learningRate(o, 1), 3e-6);
  close(learningRate(o, 50), 1.5e-4);
  close(learningRate(o, 100), 3e-4);
  close(learningRate(o, 999), 3e-4);
  close(learningRate({ ...o, warmup: 0 }, 1), 3e-4);
});

Deno.test("cosine decay after warmup reaches min_lr at the last step", () => {
  const o: TrainOptions = {
    ...GPU_DEFAULTS,
    lr: 1e-3,
    min_lr: 1e-5,
    warmup: 10,
    train_steps: 110,
    lr_schedule: "cosine",
  };
  close(learningRate(o, 5), 5e-4);
  close(learningRate(o, 10), 1e-3);
  for (const s of [10, 23, 60, 97, 110]) {
    const p = (s - 10) / 100;
    close(learningRate(o, s), 1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + Math.cos(Math.PI * p)));
  }
  close(learningRate(o, 110), 1e-5);
  close(learningRate(o, 60), 1e-5 + 0.5 * (1e-3 - 1e-5));
});

Deno.test("EMA decay warm-up min(d, (1+n)/(10+n))", () => {
  const o: TrainOptions = { ...GPU_DEFAULTS, ema_decay: 0.9999 };
  close(emaDecayAt(o, 0), 0.1);
  close(emaDecayAt(o, 1), 2 / 11);
  close(emaDecayAt(o, 90), 91 / 100);
  close(emaDecayAt(o, 1e6), 0.9999);
});

// ---- the option table: parsing, ranges, --config files, --help (tasks/cli.ts) ----

Deno.test("option table: the seed's FlowMatchingConfig defaults; every default in its own range", () => {
  const seed = {
    preset: "B", // hidden_size 768, depth 12, num_heads 12
    batch_size: 128,
    lr: 1e-4,
    train_steps: 100_000,
    num_sampling_steps: 50,
    cfg_scale: 3.0,
    label_dropout: 0.1,
  };
  for (const [k, v] of Object.entries(seed)) {
    assert.equal(GPU_DEFAULTS[k as keyof TrainOptions], v, k);
  }
  validateTrainOptions(GPU_DEFAULTS);
  validateTrainOptions(CPU_DEFAULTS);
  assert.equal(CPU_DEFAULTS.preset, "tiny");
  assert.equal(CPU_DEFAULTS.batch_size, 16);
});

Deno.test("checkOption: each bound, inclusive and exclusive, and types", () => {
  const spec = (s: Partial<OptionSpec>): OptionSpec => ({ type: "number", help: "", ...s });
  const ok = (raw: unknown, s: OptionSpec) => checkOption("x", raw, s);
  const bad = (raw: unknown, s: OptionSpec, re: RegExp) =>
    assert.throws(() => ok(raw, s), (e: unknown) => e instanceof OptionError && re.test(e.message));
  assert.equal(ok("1", spec({ type: "int", min: 1 })), 1);
  bad("0", spec({ type: "int", min: 1 }), /^x must be ≥ 1, got 0$/);
  assert.equal(ok("1e-9", spec({ above: 0 })), 1e-9);
  bad("0", spec({ above: 0 }), /^x must be > 0, got 0$/);
  assert.equal(ok(0, spec({ min: 0, below: 1 })), 0);
  bad(1, spec({ min: 0, below: 1 }), /^x must be in \[0, 1\), got 1$/);
  bad(1.0000001, spec({ min: 0, max: 1 }), /in \[0, 1\]/);
  bad("-0.5", spec({ above: -0.5, max: 2 }), /in \(-0\.5, 2\]/);
  bad("2.5", spec({ type: "int" }), /expects an integer, got '2\.5'/);
  bad("", spec({}), /expects a number/);
  bad("Infinity", spec({}), /expects a number/);
  bad("NaN", spec({}), /expects a number/);
  bad(true, spec({}), /expects a number, got true/);
  bad(3, spec({ type: "string" }), /expects a string, got 3/);
  bad("c", spec({ type: "string", choices: ["a", "b"] }), /must be one of a, b, got 'c'/);
  bad("yes", spec({ type: "boolean" }), /true or false/);
  const even = spec({ type: "int", check: (v) => (v as number) % 2 ? "must be even" : undefined });
  bad(3, even, /^x must be even$/);
  assert.equal(ok(4, even), 4);
});

Deno.test("parseFlags: kebab and snake names, aliases, negative numbers as values, last one wins", () => {
  const { values } = parseFlags(
    [
      ...["--batch-size", "4", "--logit_mean", "-1.5", "--steps=7", "--lr", "1e-3"],
      ...["--logit-mean", "-.5e-1", "--lr", "2e-3"],
    ],
    TRAIN_OPTIONS,
  );
  assert.deepEqual(values, { batch_size: 4, logit_mean: -0.05, train_steps: 7, lr: 2e-3 });
  const usage = (args: string[], re: RegExp) =>
    assert.throws(
      () => parseFlags(args, TRAIN_OPTIONS),
      (e: unknown) => e instanceof UsageError && re.test(e.message),
    );
  usage(["--steps", "-5"], /^--steps must be ≥ 1, got -5$/);
  usage(["--lr", "-1"], /^--lr must be > 0, got -1$/);
  usage(["--seed", "--lr", "1"], /^--seed needs a value/);
  usage(["--name-of-nothing", "1"], /unknown option '--name-of-nothing'/);
  usage(["5"], /unexpected argument '5'/);
  assert.equal(parseFlags(["-h"], TRAIN_OPTIONS).help, true);
});

Deno.test("readConfigFile: checked like flags, every error names the file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "flowgpu_cfg_" });
  const file = async (text: string) => {
    const p = `${dir}/c${crypto.randomUUID().slice(0, 8)}.json`;
    await Deno.writeTextFile(p, text);
    return p;
  };
  const good = await file('{"steps": 10, "batch-size": 8, "lr_schedule": "cosine"}');
  assert.deepEqual(await readConfigFile(good, TRAIN_OPTIONS), {
    train_steps: 10,
    batch_size: 8,
    lr_schedule: "cosine",
  });
  for (
    const [text, re] of [
      ['{"lr": 0}', /"lr" must be > 0, got 0/],
      ['{"warmup": 1.5}', /"warmup" expects an integer/],
      ['{"preset": 5}', /"preset" expects a string, got 5/],
      ['{"lr": 1} trailing', /not valid JSON/],
      ["null", /expected a JSON object/],
    ] as const
  ) {
    const p = await file(text);
    await assert.rejects(
      () => readConfigFile(p, TRAIN_OPTIONS),
      (e: unknown) =>
        e instanceof UsageError && e.message.startsWith(`--config ${p}: `) &&
        re.test(e.message),
    );
  }
  await Deno.remove(dir, { recursive: true });
});

Deno.test("helpText: a line per option with its type, range, choices, alias and both defaults", () => {
  const text = helpText("usage", TRAIN_OPTIONS, "CPU");
  const line = (flag: string) => text.split("\n").find((l) => l.trimStart().startsWith(flag + " "));
  assert.match(line("--batch-size")!, /<int> \(≥ 1\) +images per step +\[default: 128; CPU: 16\]/);
  assert.match(line("--lr")!, /<number> \(> 0\).*\[default: 1e-4; CPU: 0\.003\]/);
  assert.match(line("--beta1")!, /\(in \[0, 1\)\)/);
  assert.match(line("--preset")!, /<tiny\|small\|S\|B\|L>/);
  assert.match(line("--train-steps")!, /\(alias --steps\)/);
  assert.equal(
    text.split("\n").filter((l) => l.startsWith("  --")).length,
    1 + Object.keys(TRAIN_OPTIONS).length,
  );
});

Deno.test("precision: f16 on an adapter without shader-f16 is a one-line error naming the fix", () => {
  const gpu = { name: "Some GPU", features: new Set<string>() } as unknown as Gpu;
  const why = precisionProblem(gpu, "f16")!;
  assert.ok(why && !why.includes("\n") && /shader-f16/.test(why) && /use f32/.test(why), why);
  assert.equal(precisionProblem(gpu, "f32"), undefined);
  assert.equal(defaultPrecision(gpu), "f32", "the default never needs what the adapter lacks");
  const f16 = { ...gpu, features: new Set(["shader-f16"]) } as Gpu;
  assert.equal(precisionProblem(f16, "f16"), undefined);
  assert.ok(["f32", "f16"].includes(defaultPrecision(f16)));
});
