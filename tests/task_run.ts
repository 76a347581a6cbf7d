/** Running a task as a subprocess (as a user would), and checking how it ended. */

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** `deno run -A tasks/<name>.ts ...args`, output captured, colours off. */
export async function runTask(name: string, args: string[]): Promise<Result> {
  const script = new URL(`../tasks/${name}.ts`, import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

export function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

export function expectOk(r: Result, what: string): void {
  assert(r.code === 0, `${what}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
}

/** Exit non-zero with exactly one line, "error: …", on stderr (no stack trace). */
export function expectOneLineError(r: Result, what: string, pattern?: RegExp): void {
  assert(r.code !== 0, `${what}: exited 0\n${r.stdout}`);
  const lines = r.stderr.trim().split("\n").filter((l) => l.startsWith("error"));
  assert(
    lines.length === 1 && !r.stderr.includes("    at "),
    `${what}: expected one error line, got:\n${r.stderr}`,
  );
  if (pattern) assert(pattern.test(lines[0]), `${what}: "${lines[0]}" does not match ${pattern}`);
}
