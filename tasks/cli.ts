/**
 * Flag parsing shared by the tasks: each option accepted in kebab-case and with underscores as the
 * seed spells it, typed by its default, unknown or malformed flags a one-line error.
 */
import { parseArgs } from "node:util";

export type Kind = "number" | "int" | "string" | "boolean";

export interface FlagSpec {
  kind: Kind;
  help: string;
  /** Other names (without dashes), e.g. "steps" for train_steps. */
  aliases?: string[];
  /** Allowed values for a string option. */
  choices?: string[];
}

/** A user error: printed as one line, exit code 2. */
export class UsageError extends Error {}

const kebab = (s: string) => s.replaceAll("_", "-");

/**
 * Parse `args` against `specs` (keys in snake_case). Returns the given values only, keyed by
 * snake_case name; `help: true` when --help/-h was given.
 */
export function parseFlags(
  args: string[],
  specs: Record<string, FlagSpec>,
): { values: Record<string, string | number | boolean>; help: boolean } {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  const canonical = new Map<string, string>();
  for (const [name, spec] of Object.entries(specs)) {
    const type = spec.kind === "boolean" ? "boolean" : "string";
    for (
      const n of new Set([name, kebab(name), ...(spec.aliases ?? []).flatMap((a) => [a, kebab(a)])])
    ) {
      options[n] = { type };
      canonical.set(n, name);
    }
  }
  let parsed;
  try {
    parsed = parseArgs({ args, options, strict: true, allowPositionals: false });
  } catch (e) {
    const msg = (e as Error).message.split("\n")[0].replace(/\. To specify.*$/, "");
    throw new UsageError(`${msg} (see --help)`);
  }
  const values: Record<string, string | number | boolean> = {};
  for (const [flag, raw] of Object.entries(parsed.values)) {
    if (flag === "help") continue;
    const name = canonical.get(flag)!;
    values[name] = convert(flag, raw as string | boolean, specs[name]);
  }
  return { values, help: Boolean(parsed.values.help) };
}

/** Convert one raw flag value by the spec's kind; throws UsageError naming the flag. */
export function convert(flag: string, raw: unknown, spec: FlagSpec): string | number | boolean {
  if (spec.kind === "boolean") {
    if (typeof raw === "boolean") return raw;
    throw new UsageError(`--${kebab(flag)} takes no value`);
  }
  if (spec.kind === "string") {
    const s = String(raw);
    if (spec.choices && !spec.choices.includes(s)) {
      throw new UsageError(
        `--${kebab(flag)} must be one of ${spec.choices.join(", ")}, got '${s}'`,
      );
    }
    return s;
  }
  const n = typeof raw === "number" ? raw : Number(String(raw).trim());
  if (String(raw).trim() === "" || !Number.isFinite(n)) {
    throw new UsageError(`--${kebab(flag)} expects a number, got '${raw}'`);
  }
  if (spec.kind === "int" && !Number.isInteger(n)) {
    throw new UsageError(`--${kebab(flag)} expects an integer, got '${raw}'`);
  }
  return n;
}

/** Help text: one line per flag with its default. */
export function helpText(
  usage: string,
  specs: Record<string, FlagSpec>,
  defaults: Record<string, unknown>,
): string {
  const lines = [usage, "", "Options (each also accepted with underscores, e.g. --batch_size):"];
  for (const [name, spec] of Object.entries(specs)) {
    const alias = spec.aliases?.length
      ? ` (alias ${spec.aliases.map((a) => `--${kebab(a)}`).join(", ")})`
      : "";
    const d = defaults[name];
    const def = d === undefined ? "" : `  [default: ${d}]`;
    const flag = `--${kebab(name)}${
      spec.kind === "boolean" ? "" : ` <${spec.kind === "string" ? "value" : spec.kind}>`
    }`;
    lines.push(`  ${flag.padEnd(30)} ${spec.help}${alias}${def}`);
  }
  lines.push(`  ${"--help".padEnd(30)} show this help`);
  return lines.join("\n");
}

/** Run a task's main, printing UsageError and other errors as one line with exit code 2 / 1. */
export async function runMain(main: () => Promise<void>): Promise<void> {
  try {
    await main();
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message}`);
      Deno.exit(2);
    }
    const err = e as Error;
    console.error(`error: ${err.message ?? err}`);
    if (Deno.env.get("FLOWGPU_DEBUG")) console.error(err.stack);
    Deno.exit(1);
  }
}
