/**
 * The checkpoint a `--resume` continues from: a file, a run directory, or "auto" (the newest under
 * --out). A directory or "auto" falls back past checkpoints that do not load, with a warning for
 * each (those of another kind of model, e.g. a VQ-VAE's for `train`, are passed over silently);
 * an explicit file that does not load is an error naming it. The loader is the task's: a flow
 * training checkpoint by default.
 */
import { basename, dirname, join } from "node:path";
import { decodeCheckpoint, isVqvaeCheckpoint, type TrainingCheckpoint } from "../mod.ts";
import { UsageError, warn } from "./cli.ts";
import { reason } from "./files.ts";

export interface ResumePoint<C = TrainingCheckpoint> {
  path: string;
  ckpt: C;
  /** The run directory the checkpoint belongs to (…/<run>/checkpoints/<file>), if any. */
  runDir?: string;
}

/** A checkpoint of another kind of model than the task trains: skipped silently in scans. */
export class OtherKind extends Error {}

/** Reads a checkpoint to resume from, or throws an Error saying why it cannot. */
export type ResumeLoader<C> = (path: string) => Promise<C>;

/** A file's bytes; the Error says why not, without Deno's path tail. */
export async function readBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw new Error(reason(e));
  }
}

/** A training checkpoint (weights, EMA, Adam moments, trainer state), or an Error saying why not. */
export async function loadTrainingCheckpoint(path: string): Promise<TrainingCheckpoint> {
  const bytes = await readBytes(path);
  if (isVqvaeCheckpoint(bytes)) {
    throw new OtherKind("a VQ-VAE checkpoint: train a flow model on its latents with --vqvae");
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

function point<C>(path: string, ckpt: C): ResumePoint<C> {
  const dir = dirname(path);
  return { path, ckpt, runDir: basename(dir) === "checkpoints" ? dirname(dir) : undefined };
}

/** The first checkpoint of `list` that loads, warning about each one skipped. */
async function firstGood<C>(
  list: string[],
  what: string,
  loader: ResumeLoader<C>,
): Promise<ResumePoint<C>> {
  let others = 0;
  for (const path of list) {
    try {
      return point(path, await loader(path));
    } catch (e) {
      if (e instanceof OtherKind) others++;
      else warn(`--resume ${what}: skipping ${path}: ${(e as Error).message}`);
    }
  }
  const loading = list.length - others;
  throw new UsageError(
    loading
      ? `--resume ${what}: none of its ${loading} checkpoint(s) loads (see the warnings)`
      : others
      ? `--resume ${what}: no checkpoint of this task's model there (${others} of another kind)`
      : `--resume ${what}: no checkpoints/*.safetensors there`,
  );
}

/** Resolve `--resume` (file, run directory or "auto" under `out`) with the task's loader. */
export async function findResume<C = TrainingCheckpoint>(
  resume: string,
  out: string,
  loader: ResumeLoader<C> = loadTrainingCheckpoint as unknown as ResumeLoader<C>,
): Promise<ResumePoint<C>> {
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
    return firstGood(all.map((c) => c.path), `auto (under ${out})`, loader);
  }
  const st = await Deno.stat(resume).catch(() => undefined);
  if (!st) throw new UsageError(`--resume ${resume}: no such file or directory`);
  if (st.isDirectory) {
    return firstGood((await checkpointsOf(resume)).map((c) => c.path), resume, loader);
  }
  try {
    return point(resume, await loader(resume));
  } catch (e) {
    throw new UsageError(`--resume ${resume}: ${(e as Error).message}`);
  }
}
