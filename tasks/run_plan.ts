/**
 * What the training tasks (`train`, `train-vqvae`) share before their GPU starts: the run options
 * (--config, --out, --name, --resume, --overwrite), the plan built from flags, a --config file and
 * --resume (all checked, nothing written), the run directory the plan opens, and the hint when a
 * resumed run is already at its total.
 */
import { join, resolve } from "node:path";
import { type OptionTable, validateOptions } from "../mod.ts";
import { helpText, kebab, parseFlags, readConfigFile, UsageError } from "./cli.ts";
import { checkWritableDir } from "./files.ts";
import { checkNewRun, openExistingRun, openNewRun, type RunDir } from "./run_dir.ts";
import { findResume, type ResumeLoader, type ResumePoint } from "./resume.ts";

export const RUN_OPTIONS = {
  config: {
    type: "string",
    help: 'JSON file of these options by name, e.g. {"lr": 3e-4}; flags override it',
  },
  out: { type: "string", help: "parent folder of run directories", default: "runs" },
  name: {
    type: "string",
    help: "run name (default: the date and time, made unique)",
    check: (n: string) =>
      /^[\w.-]+$/.test(n) && n !== "." && n !== ".." && n !== "latest"
        ? undefined
        : `must be a folder name of letters, digits, '.', '_', '-' (not '.', '..' or 'latest'), got '${n}'`,
  },
  resume: {
    type: "string",
    help: "continue a run: a checkpoint, a run directory, or 'auto' (the newest checkpoint " +
      "under --out); falls back past checkpoints that do not load",
  },
  overwrite: { type: "boolean", help: "replace the run already in --out/--name" },
  time_limit: {
    type: "number",
    help: "stop training after this many seconds of the loop (start-up not counted) and " +
      "finish as at the last step (final checkpoint, grids); 0: no limit; not saved with the run",
    default: 0,
    min: 0,
  },
} satisfies OptionTable;

/** A training task as the plan sees it. */
export interface TaskSpec<C> {
  /** The task's name in hints, e.g. "train" (`deno task train …`). */
  task: string;
  usage: string;
  /** The options a run saves (config.json, checkpoints) and a --config file may set. */
  table: OptionTable;
  /** Options of one invocation, neither saved nor allowed in --config (e.g. --bench). */
  extra?: OptionTable;
  /** Options fixed by a checkpoint's model: a resumed run cannot change them. */
  modelKeys: readonly string[];
  /** Reads a checkpoint to resume from (throws an Error saying why it cannot). */
  load: ResumeLoader<C>;
  /** A checkpoint's saved options (as stored) and its step. */
  saved(c: C): { options?: Record<string, unknown>; step: number };
}

export interface Plan<C> {
  /** Options of the task's table given (flags over --config), by name. */
  given: Record<string, unknown>;
  /** Options of `extra` given. */
  flags: Record<string, string | number | boolean>;
  out: string;
  name?: string;
  overwrite: boolean;
  resume?: ResumePoint<C>;
  /** Seconds of training loop before it finishes early (0: none). */
  timeLimit: number;
}

/** Flags, --config and --resume, all checked before any GPU work; undefined after --help. */
export async function resolvePlan<C>(
  args: string[],
  spec: TaskSpec<C>,
): Promise<Plan<C> | undefined> {
  const extra = spec.extra ?? {};
  const options: OptionTable = { ...spec.table, ...RUN_OPTIONS, ...extra };
  const { values: flags, help } = parseFlags(args, options);
  if (help) {
    console.log(helpText(spec.usage, options, "CPU profile"));
    return undefined;
  }
  const file = flags.config
    ? await readConfigFile(String(flags.config), options, ["config", ...Object.keys(extra)])
    : {};
  const all = { ...file, ...flags } as Record<string, unknown>;
  const given: Record<string, unknown> = {};
  for (const k of Object.keys(spec.table)) if (all[k] !== undefined) given[k] = all[k];
  const out = String(all.out ?? RUN_OPTIONS.out.default);
  await checkWritableDir(out, `--out ${out}`).catch((e) => {
    throw new UsageError(e.message);
  });
  // The emoji cache folder is created on first use; every other --data must exist.
  if (given.data !== undefined && given.dataset !== "emoji") {
    const st = await Deno.stat(String(given.data)).catch(() => undefined);
    if (!st?.isDirectory) throw new UsageError(`--data ${given.data}: no such folder`);
  }
  if (all.resume !== undefined && all.overwrite) {
    throw new UsageError("--resume continues a run and --overwrite replaces one: give only one");
  }
  const plan: Plan<C> = {
    given,
    flags: Object.fromEntries(Object.keys(extra).flatMap((k) => k in flags ? [[k, flags[k]]] : [])),
    out,
    name: all.name as string | undefined,
    overwrite: Boolean(all.overwrite),
    timeLimit: Number(all.time_limit ?? 0),
  };
  if (all.resume !== undefined) {
    plan.resume = await findResume(String(all.resume), out, spec.load);
    const saved = savedOptions(spec, plan.resume);
    for (const k of spec.modelKeys) {
      if (given[k] !== undefined && saved[k] !== undefined && given[k] !== saved[k]) {
        throw new UsageError(
          `--${kebab(k)} ${given[k]}: the checkpoint's model has ${saved[k]} ` +
            "(a resumed run keeps its model; start a new run to change it)",
        );
      }
    }
  }
  const target = plan.name !== undefined ? join(out, plan.name) : undefined;
  if (target && !(plan.resume?.runDir && resolve(target) === resolve(plan.resume.runDir))) {
    await checkNewRun(out, plan.name!, plan.overwrite);
  }
  return plan;
}

/** The options stored in a checkpoint (unknown names of older versions dropped), checked. */
export function savedOptions<C>(spec: TaskSpec<C>, r: ResumePoint<C>): Record<string, unknown> {
  const raw = spec.saved(r.ckpt).options ?? {};
  const known = Object.fromEntries(Object.entries(raw).filter(([k]) => k in spec.table));
  try {
    return validateOptions(spec.table, known);
  } catch (e) {
    throw new UsageError(`--resume ${r.path}: its saved options: ${(e as Error).message}`);
  }
}

/** The run directory: the resumed run's own, or a new one (never over an existing run). */
export function openRun<C>(plan: Plan<C>): Promise<RunDir> {
  const own = plan.resume?.runDir;
  const target = plan.name !== undefined ? join(plan.out, plan.name) : own;
  if (own && target && resolve(target) === resolve(own)) return openExistingRun(own);
  return openNewRun(plan.out, plan.name, plan.overwrite);
}

/** A resumed run already at its total: say how to go further (nothing else to do). */
export function alreadyDone<C>(spec: TaskSpec<C>, plan: Plan<C>): boolean {
  const r = plan.resume;
  if (!r) return false;
  const step = spec.saved(r.ckpt).step;
  const total = Number(plan.given.train_steps ?? savedOptions(spec, r).train_steps ?? Infinity);
  if (step < total) return false;
  console.log(
    `${r.path} is at step ${step}, the run's total is ${total}: nothing to train. To train ` +
      `further, raise the total: deno task ${spec.task} --resume ${r.path} --steps ${2 * step}`,
  );
  return true;
}
