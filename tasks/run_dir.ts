/**
 * A run directory belongs to one run: an exclusive OS lock on `<run>/.lock` (holding the PID)
 * while it trains, released by the OS however the process ends; an existing run is never replaced
 * unless asked; unnamed runs get a fresh name even when two start in the same second.
 */
import { basename, dirname, join } from "node:path";
import { UsageError } from "./cli.ts";
import { removeTempFiles } from "./files.ts";

export interface RunDir {
  dir: string;
  /** Made for this run (not an existing run continued). */
  created: boolean;
  /** Temporary files of an interrupted write that were removed when the run was opened. */
  cleaned: number;
  release(): void;
}

const RUN_FILES = [
  "checkpoints",
  "samples",
  "metrics.jsonl",
  "eval.jsonl",
  "config.json",
  "loss.png",
  "latents.safetensors",
  "vqvae.safetensors",
];

/** The PID in a lock file (the holder writes it just after locking: wait a moment for it). */
async function holder(path: string): Promise<string> {
  let pid = "";
  for (let i = 0; i < 20 && !pid; i++) {
    pid = (await Deno.readTextFile(path).catch(() => "")).trim();
    if (!pid) await new Promise((r) => setTimeout(r, 50));
  }
  return pid;
}

function inUse(dir: string, path: string, pid: string): UsageError {
  return new UsageError(
    `${dir} is in use by ${pid ? `process ${pid}` : "another process"} (it holds ${path}); ` +
      "wait for that run or stop it, or pick another --name",
  );
}

/** Take the run's lock or throw a UsageError naming the process that holds it. */
async function lock(dir: string): Promise<() => void> {
  const path = join(dir, ".lock");
  const f = await Deno.open(path, { read: true, write: true, create: true });
  if (!(await f.tryLock(true))) {
    f.close();
    throw inUse(dir, path, await holder(path));
  }
  await f.truncate(0);
  await f.write(new TextEncoder().encode(`${Deno.pid}\n`));
  return () => {
    try {
      f.unlock();
      f.close();
    } catch { /* already closed */ }
  };
}

/** The step of the newest `step_*.safetensors` in a run, or 0. */
async function lastStep(dir: string): Promise<number> {
  let last = 0;
  try {
    for await (const e of Deno.readDir(join(dir, "checkpoints"))) {
      const m = e.name.match(/^step_(\d+)\.safetensors$/);
      if (m) last = Math.max(last, Number(m[1]));
    }
  } catch { /* no checkpoints */ }
  return last;
}

/** What an existing run directory holds, in words, or undefined if no run was trained in it. */
async function describeRun(dir: string): Promise<string | undefined> {
  const exists = (p: string) => Deno.stat(join(dir, p)).then(() => true, () => false);
  if (await exists("checkpoints/final.safetensors")) return "a finished run";
  const step = await lastStep(dir);
  if (step > 0) return `an interrupted run (last checkpoint at step ${step})`;
  const metrics = await Deno.readTextFile(join(dir, "metrics.jsonl")).catch(() => "");
  if (metrics.trim()) return "an interrupted run (metrics but no checkpoint)";
  return undefined;
}

async function opened(dir: string, release: () => void, created: boolean): Promise<RunDir> {
  const cleaned = await removeTempFiles([dir, join(dir, "checkpoints"), join(dir, "samples")]);
  return { dir, created, cleaned, release };
}

/** Lock an existing run to continue it (--resume). */
export async function openExistingRun(dir: string): Promise<RunDir> {
  return opened(dir, await lock(dir), false);
}

/**
 * Whether `out/name` can take a new run, checked early without creating or holding anything (the
 * same checks are repeated under the lock): throws a UsageError if a live run holds it, or if it
 * holds a run and `overwrite` is not set.
 */
export async function checkNewRun(out: string, name: string, overwrite: boolean): Promise<void> {
  const dir = join(out, name), path = join(dir, ".lock");
  const f = await Deno.open(path, { read: true, write: true }).catch(() => undefined);
  if (f) {
    const free = await f.tryLock(true);
    if (free) await f.unlock();
    f.close();
    if (!free) throw inUse(dir, path, await holder(path));
  }
  await refuseExisting(dir, overwrite);
}

async function refuseExisting(dir: string, overwrite: boolean): Promise<string | undefined> {
  const held = await describeRun(dir);
  if (held && !overwrite) {
    const how = held === "a finished run"
      ? `train it further with --resume ${dir} --steps N`
      : `continue it with --resume ${dir}`;
    throw new UsageError(
      `${dir} already holds ${held}; ${how}, pick another --name, or pass --overwrite to replace it`,
    );
  }
  return held;
}

/**
 * Create and lock a new run under `out`: `name`, or a timestamp made unique with -2, -3, ….
 * A named directory that already holds a run is refused unless `overwrite` (its run files are
 * then removed).
 */
export async function openNewRun(out: string, name?: string, overwrite = false): Promise<RunDir> {
  await Deno.mkdir(out, { recursive: true });
  if (name === undefined) {
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    for (let i = 1;; i++) {
      const dir = join(out, i === 1 ? stamp : `${stamp}-${i}`);
      try {
        await Deno.mkdir(dir); // exclusive: fails if another run took the name
      } catch (e) {
        if (e instanceof Deno.errors.AlreadyExists) continue;
        throw e;
      }
      return opened(dir, await lock(dir), true);
    }
  }
  const dir = join(out, name);
  await Deno.mkdir(dir, { recursive: true });
  const release = await lock(dir);
  let held;
  try {
    held = await refuseExisting(dir, overwrite);
  } catch (e) {
    release();
    throw e;
  }
  if (held) {
    for (const f of RUN_FILES) await Deno.remove(join(dir, f), { recursive: true }).catch(() => {});
  }
  return opened(dir, release, true);
}

/** Point `<out>/latest` at the run directory (so `--checkpoint runs/latest` names the newest run). */
export async function linkLatest(runDir: string): Promise<void> {
  const link = join(dirname(runDir), "latest");
  if (basename(runDir) === "latest") return;
  try {
    const st = await Deno.lstat(link).catch(() => undefined);
    if (st && !st.isSymlink) return; // a real directory named "latest": leave it alone
    const tmp = join(dirname(runDir), `.latest.${Deno.pid}.tmp`);
    await Deno.symlink(basename(runDir), tmp);
    await Deno.rename(tmp, link); // atomic replace: never a moment without a link
  } catch { /* symlinks unsupported here: not needed for training */ }
}
