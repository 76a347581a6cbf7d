/**
 * Files the tasks write: atomic writes whose temporary files are removed on every exit path, the
 * cleanup of those a hard kill left, checks that an output can be written before any work, and
 * output names that never overwrite.
 */
import { dirname, extname, join } from "node:path";
import { tempName, writeViaTemp } from "../src/io/atomic_write.ts";

const exitHooks = new Set<() => void>();
const temps = new Set<string>();

/** Register `fn` to run (synchronously) before the process exits; returns its removal. */
export function onExit(fn: () => void): () => void {
  exitHooks.add(fn);
  return () => exitHooks.delete(fn);
}

/** Run the exit hooks and remove temporary files still being written (idempotent). */
export function runExitHooks(): void {
  for (const fn of [...exitHooks]) {
    exitHooks.delete(fn);
    try {
      fn();
    } catch { /* exiting anyway */ }
  }
  for (const t of temps) {
    try {
      Deno.removeSync(t);
    } catch { /* renamed or never created */ }
  }
  temps.clear();
}

/** Exit now with `code` after the exit hooks (temporary files removed). */
export function exitNow(code: number): never {
  runExitHooks();
  Deno.exit(code);
}

/**
 * Exit at SIGINT (130) or SIGTERM (143) after the exit hooks, so an interrupted write leaves no
 * temporary file (for tasks with nothing else to save).
 */
export function exitOnSignals(): void {
  const codes = { SIGINT: 130, SIGTERM: 143 } as const;
  for (const [name, code] of Object.entries(codes)) {
    if (name === "SIGTERM" && Deno.build.os === "windows") continue;
    Deno.addSignalListener(name as Deno.Signal, () => exitNow(code));
  }
}

/** An OS error's reason without Deno's "(os error N): open '<path>'" tail. */
export function reason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.NotADirectory) return "a path component is a file, not a folder";
  if (e instanceof Deno.errors.IsADirectory) return "is a folder";
  const msg = String((e as Error)?.message ?? e);
  return msg.replace(/\s*\(os error \d+\).*$/, "").replace(/:\s*\w+ '.*'$/, "");
}

/**
 * Write `bytes` to `path` atomically (src/io/atomic_write.ts: a temporary file in the same
 * folder, synced, then renamed). Errors name `path`, never the temporary file.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = tempName(path);
  temps.add(tmp); // removed by the exit hooks should the process stop mid-write
  try {
    await writeViaTemp(tmp, path, bytes);
  } catch (e) {
    throw new Error(`cannot write ${path}: ${reason(e)}`);
  } finally {
    temps.delete(tmp);
  }
}

/** Remove `.*.tmp` files (left by a hard kill during a write) in `dirs`; returns how many. */
export async function removeTempFiles(dirs: string[]): Promise<number> {
  let n = 0;
  for (const dir of dirs) {
    try {
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile && e.name.startsWith(".") && e.name.endsWith(".tmp")) {
          await Deno.remove(join(dir, e.name)).catch(() => {});
          n++;
        }
      }
    } catch { /* no such folder */ }
  }
  return n;
}

async function statOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.stat(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    if (e instanceof Deno.errors.NotADirectory) return undefined;
    throw e;
  }
}

/** Create and remove a probe file in `dir`: the surest test that files can be written there. */
async function probe(dir: string, label: string): Promise<void> {
  const p = tempName(join(dir, "probe"));
  try {
    (await Deno.open(p, { write: true, createNew: true })).close();
    await Deno.remove(p);
  } catch (e) {
    throw new Error(`${label}: cannot write in ${dir}: ${reason(e)}`);
  }
}

/** The nearest existing ancestor of `path` (itself if it exists). */
async function existingAncestor(path: string): Promise<{ path: string; info: Deno.FileInfo }> {
  let p = path;
  for (;;) {
    const info = await statOrUndefined(p);
    if (info) return { path: p, info };
    const up = dirname(p);
    if (up === p) throw new Error(`${path}: no existing folder above it`);
    p = up;
  }
}

/**
 * `path` is a file that can be written: not a folder, its folder exists, a file can be created
 * there. Throws an Error starting with `label` (e.g. "--out samples.png").
 */
export async function checkWritableFile(path: string, label: string): Promise<void> {
  const info = await statOrUndefined(path);
  if (info?.isDirectory) throw new Error(`${label}: is a folder; give a file name`);
  const dir = dirname(path);
  const d = await statOrUndefined(dir);
  if (!d) {
    const anc = await existingAncestor(dir);
    throw new Error(
      anc.info.isDirectory
        ? `${label}: the folder ${dir} does not exist; create it first`
        : `${label}: ${anc.path} is a file, not a folder`,
    );
  }
  if (!d.isDirectory) throw new Error(`${label}: ${dir} is a file, not a folder`);
  await probe(dir, label);
}

/**
 * `path` is a folder that exists or can be created (`mkdir -p`) and written. Throws an Error
 * starting with `label`.
 */
export async function checkWritableDir(path: string, label: string): Promise<void> {
  const anc = await existingAncestor(path);
  if (!anc.info.isDirectory) {
    throw new Error(
      anc.path === path
        ? `${label}: is a file, not a folder`
        : `${label}: ${anc.path} is a file, not a folder`,
    );
  }
  await probe(anc.path, label);
}

/**
 * The first of `path`, `stem-2.ext`, `stem-3.ext`, … that does not exist (a default output name
 * that never overwrites an earlier one).
 */
export async function firstFreeName(path: string): Promise<string> {
  const ext = extname(path), stem = path.slice(0, path.length - ext.length);
  for (let i = 1;; i++) {
    const p = i === 1 ? path : `${stem}-${i}${ext}`;
    try {
      await Deno.lstat(p);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return p;
      throw e;
    }
  }
}
