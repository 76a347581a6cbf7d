/**
 * The README's Library section is a tested example: its ```ts block runs against the local
 * mod.ts in a fresh process (in a temporary directory, where it writes its checkpoint), and its
 * results are checked.
 */
import { join } from "node:path";
import { assert } from "./task_run.ts";

const root = new URL("..", import.meta.url);

/** The first ```ts block after "## Library" in README.md. */
export async function libraryExample(): Promise<string> {
  const readme = await Deno.readTextFile(new URL("README.md", root));
  const at = readme.indexOf("\n## Library\n");
  assert(at >= 0, "README.md has no '## Library' section");
  const m = readme.slice(at).match(/```ts\n([\s\S]*?)```/);
  assert(m !== null, "README.md's Library section has no ```ts block");
  return m[1];
}

Deno.test("README Library example runs against the local mod.ts", async () => {
  const code = (await libraryExample()).replace(
    /from "\.\/mod\.ts"/,
    `from ${JSON.stringify(new URL("mod.ts", root).href)}`,
  );
  assert(code.includes(new URL("mod.ts", root).href), "the example imports ./mod.ts");
  const dir = await Deno.makeTempDir({ prefix: "flowgpu_readme_" });
  const script = join(dir, "example.ts");
  // What the example computed, for the checks below.
  const report = `
const finite = (a) => a.every(Number.isFinite);
console.log("REPORT " + JSON.stringify({
  metrics: metrics.map((m) => [m.step, m.loss]),
  v: [v.length, finite(v)],
  images: [images.length, finite(images)],
  kind: loaded.kind,
}));
`;
  await Deno.writeTextFile(script, code + report);
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-lock", script],
    cwd: dir,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(out.stdout);
  const stderr = new TextDecoder().decode(out.stderr);
  assert(out.success, `the README example failed:\n${stderr.slice(-3000)}`);
  const line = stdout.split("\n").find((l) => l.startsWith("REPORT "));
  assert(line !== undefined, `no report in:\n${stdout}`);
  const r = JSON.parse(line.slice(7));
  const per = 28 * 28;
  assert(r.metrics.length === 2 && r.metrics[1][0] === 2, `metrics ${JSON.stringify(r.metrics)}`);
  assert(r.metrics.every(([, loss]: number[]) => loss > 0.1 && loss < 10), "loss out of range");
  assert(r.v[0] === 2 * per && r.v[1], `velocity ${JSON.stringify(r.v)}`);
  assert(r.images[0] === 4 * per && r.images[1], `images ${JSON.stringify(r.images)}`);
  assert(r.kind === "ema", `the saved EMA model loads as EMA weights (kind ${r.kind})`);
  assert((await Deno.stat(join(dir, "tiny.safetensors"))).size > 100_000, "checkpoint written");
  await Deno.remove(dir, { recursive: true });
  console.log(`  README example: losses ${r.metrics.map((m: number[]) => m[1].toFixed(3))}`);
});
