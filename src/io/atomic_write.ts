/**
 * Atomic file writes (Deno): the bytes go to a hidden temporary file next to the target, are
 * synced, then renamed over it, so a crash never leaves a partial file under the target's name.
 * The one implementation; tasks/files.ts adds the removal of the temporary file at exit.
 */

/** Hidden temporary name next to `path`: `.<name>.<random>.tmp`. */
export function tempName(path: string): string {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  const dir = slash >= 0 ? path.slice(0, slash + 1) : "";
  const base = slash >= 0 ? path.slice(slash + 1) : path;
  const rand = crypto.getRandomValues(new Uint32Array(2));
  return `${dir}.${base}.${rand[0].toString(36)}${rand[1].toString(36)}.tmp`;
}

/**
 * Write `bytes` to the temporary file `tmp` (created, never overwritten), sync it, rename it to
 * `path`; on any failure `tmp` is removed and the error rethrown.
 */
export async function writeViaTemp(tmp: string, path: string, bytes: Uint8Array): Promise<void> {
  try {
    const f = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
    try {
      let off = 0;
      while (off < bytes.length) off += await f.write(bytes.subarray(off));
      await f.sync();
    } finally {
      f.close();
    }
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

/**
 * Write `bytes` to `path` atomically: a temporary file in the same directory, then rename, so a
 * crash never leaves a partial file under `path`.
 */
export async function writeFileAtomic(path: string, bytes: Uint8Array): Promise<void> {
  await writeViaTemp(tempName(path), path, bytes);
}
