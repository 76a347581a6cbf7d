/**
 * Running a task as a subprocess (as a user would on a fresh headless machine: no
 * XDG_RUNTIME_DIR, no terminal), and checking how it ended.
 */

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Path of tasks/<name>.ts. */
export const taskPath = (name: string): string =>
  new URL(`../tasks/${name}.ts`, import.meta.url).pathname;

/** The environment of a plain root shell in a container: this one without XDG_RUNTIME_DIR. */
export function headlessEnv(): Record<string, string> {
  const env = Deno.env.toObject();
  delete env.XDG_RUNTIME_DIR;
  env.NO_COLOR = "1";
  return env;
}

/** A `deno run -A tasks/<name>.ts ...args` command, output piped, headless. */
export function taskCommand(name: string, args: string[], cwd?: string): Deno.Command {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", taskPath(name), ...args],
    stdout: "piped",
    stderr: "piped",
    clearEnv: true,
    env: headlessEnv(),
    cwd,
  });
}

/** Run tasks/<name>.ts to the end. */
export async function runTask(name: string, args: string[], cwd?: string): Promise<Result> {
  const out = await taskCommand(name, args, cwd).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

/** Exit 0 with nothing on stderr but warnings (no driver noise, no error line). */
export function expectOk(r: Result, what: string): void {
  assert(r.code === 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  const noise = r.stderr.split("\n").filter((l) => l.trim() && !l.startsWith("warning: "));
  assert(noise.length === 0, `${what}: unexpected stderr:\n${r.stderr}`);
}

/**
 * Exit non-zero (`code` if given) with exactly one line, "error: …", on stderr and nothing else
 * there (no stack trace, no driver noise).
 */
export function expectOneLineError(r: Result, what: string, pattern?: RegExp, code?: number): void {
  assert(r.code !== 0, `${what}: exited 0\n${r.stdout}`);
  if (code !== undefined) {
    assert(r.code === code, `${what}: exit ${r.code}, want ${code}\n${r.stderr}`);
  }
  const lines = r.stderr.split("\n").filter((l) => l.trim() && !l.startsWith("warning: "));
  assert(
    lines.length === 1 && lines[0].startsWith("error: "),
    `${what}: expected one error line, got:\n${r.stderr}`,
  );
  if (pattern) assert(pattern.test(lines[0]), `${what}: "${lines[0]}" does not match ${pattern}`);
}

/** Every path under `dir` (relative, sorted), hidden files included. */
export async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      const rel = prefix + e.name;
      out.push(rel);
      if (e.isDirectory) await walk(`${d}/${e.name}`, rel + "/");
    }
  };
  await walk(dir, "");
  return out.sort();
}
