/**
 * The checkpoint a `--resume` continues from: a file, a run directory, or "auto" (the newest under
 * --out). A directory or "auto" falls back past checkpoints that do not load, with a warning for
 * each; an explicit file that does not load is an error naming it.
 */
import { basename, dirname, join } from "node:path";
import { decodeCheckpoint, type TrainingCheckpoint } from "../mod.ts";
import { UsageError, warn } from "./cli.ts";
import { reason } from "./files.ts";

export interface ResumePoint {
  path: string;
  ckpt: TrainingCheckpoint;
  /** The run directory the checkpoint belongs to (…/<run>/checkpoints/<file>), if any. */
  runDir?: string;
}

/** A training checkpoint (weights, EMA, Adam moments, trainer state), or an Error saying why not. */
async function load(path: string): Promise<TrainingCheckpoint> {
  let bytes;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    throw new Error(reason(e));
  }
  const c = decodeCheckpoint(bytes);
  if (!c.state || !c.ema || !c.m || !c.v) {
    throw new Error("not a training checkpoint (no optimizer/EMA state; it can only be sampled)");
  }
  return c;
}

/** Checkpoints of a run directory, newest first (by time, then final before step_N by N). */
async function checkpointsOf(
  runDir: string,
): Promise<{ path: string; mtime: number; rank: number }[]> {
  const dir = join(runDir, "checkpoints");
  const out = [];
  try {
    for await (const e of Deno.readDir(dir)) {
      if (!e.isFile || !e.name.endsWith(".safetensors")) continue;
      const path = join(dir, e.name);
      const mtime = (await Deno.stat(path)).mtime?.getTime() ?? 0;
      const m = e.name.match(/^step_(\d+)\./);
      out.push({
        path,
        mtime,
        rank: e.name === "final.safetensors" ? Infinity : Number(m?.[1] ?? -1),
      });
    }
  } catch { /* no checkpoints folder */ }
  return out.sort((a, b) => b.mtime - a.mtime || b.rank - a.rank);
}

function point(path: string, ckpt: TrainingCheckpoint): ResumePoint {
  const dir = dirname(path);
  return { path, ckpt, runDir: basename(dir) === "checkpoints" ? dirname(dir) : undefined };
}

/** The first checkpoint of `list` that loads, warning about each one skipped. */
async function firstGood(list: string[], what: string): Promise<ResumePoint> {
  for (const path of list) {
    try {
      return point(path, await load(path));
    } catch (e) {
      warn(`--resume ${what}: skipping ${path}: ${(e as Error).message}`);
    }
  }
  throw new UsageError(
    list.length
      ? `--resume ${what}: none of its ${list.length} checkpoint(s) loads (see the warnings)`
      : `--resume ${what}: no checkpoints/*.safetensors there`,
  );
}

/** Resolve `--resume` (file, run directory or "auto" under `out`). */
export async function findResume(resume: string, out: string): Promise<ResumePoint> {
  if (resume === "auto") {
    const all = [];
    try {
      for await (const e of Deno.readDir(out)) {
        if (e.isDirectory) all.push(...await checkpointsOf(join(out, e.name)));
      }
    } catch { /* no runs yet */ }
    all.sort((a, b) => b.mtime - a.mtime || b.rank - a.rank);
    if (!all.length) {
      throw new UsageError(`--resume auto: no checkpoint under ${out}/*/checkpoints/`);
    }
    return firstGood(all.map((c) => c.path), `auto (under ${out})`);
  }
  const st = await Deno.stat(resume).catch(() => undefined);
  if (!st) throw new UsageError(`--resume ${resume}: no such file or directory`);
  if (st.isDirectory) return firstGood((await checkpointsOf(resume)).map((c) => c.path), resume);
  try {
    return point(resume, await load(resume));
  } catch (e) {
    throw new UsageError(`--resume ${resume}: ${(e as Error).message}`);
  }
}
