/**
 * Command lines from an option table (src/train/options.ts's OptionSpec): flags in kebab-case or
 * with underscores as the seed spells them, negative numbers as values, types and ranges checked,
 * `--config` JSON files checked the same way, `--help` from the same table; every user error one
 * line with exit code 2.
 */
import {
  checkOption,
  defaultsOf,
  OptionError,
  type OptionSpec,
  type OptionTable,
  rangeText,
} from "../mod.ts";
import { extname } from "node:path";
import { checkWritableFile, firstFreeName, runExitHooks } from "./files.ts";

/** A user error: printed as one line, exit code 2. */
export class UsageError extends Error {}

export const kebab = (s: string): string => s.replaceAll("_", "-");
const snake = (s: string) => s.replaceAll("-", "_");

/** The canonical option name for a flag or config key (kebab or snake, or an alias), if any. */
function lookup(table: OptionTable, key: string): string | undefined {
  const k = snake(key);
  if (Object.hasOwn(table, k)) return k;
  return Object.keys(table).find((n) => table[n].aliases?.includes(k));
}

/** checkOption with the error as a UsageError that starts with `label`. */
function check(label: string, name: string, raw: unknown, spec: OptionSpec) {
  try {
    return checkOption(name, raw, spec);
  } catch (e) {
    if (e instanceof OptionError) throw new UsageError(`${label} ${e.reason}`);
    throw e;
  }
}

/** The TypeScript type of an option's values. */
type ValueOf<S> = S extends { type: "boolean" } ? boolean
  : S extends { type: "string" } ? string
  : number;

/** A table's options as parsed: those with a default always present. */
export type OptionValues<T extends OptionTable> =
  & { [K in keyof T as T[K] extends { default: unknown } ? K : never]: ValueOf<T[K]> }
  & { [K in keyof T as T[K] extends { default: unknown } ? never : K]?: ValueOf<T[K]> };

/** Parsed values over the table's defaults (`cpu`: the CPU profile's where they differ). */
export function withDefaults<T extends OptionTable>(
  table: T,
  values: Record<string, string | number | boolean>,
  cpu = false,
): OptionValues<T> {
  return { ...defaultsOf(table, cpu), ...values } as OptionValues<T>;
}

/**
 * Parse `args` against `table`. A flag taking a value takes the next argument, also when that is
 * a negative number (`--steps -5`); `--flag=value` works too; a later flag overrides an earlier
 * one. Returns the given values only, by canonical name; `help: true` for --help/-h.
 */
export function parseFlags(
  args: string[],
  table: OptionTable,
): { values: Record<string, string | number | boolean>; help: boolean } {
  const values: Record<string, string | number | boolean> = {};
  let help = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--help" || arg === "-h") {
      help = true;
      continue;
    }
    if (!arg.startsWith("--") || arg === "--") {
      throw new UsageError(`unexpected argument '${arg}': options are --name value (see --help)`);
    }
    const eq = arg.indexOf("=");
    const flag = eq < 0 ? arg : arg.slice(0, eq);
    const name = lookup(table, flag.slice(2));
    if (!name) throw new UsageError(`unknown option '${flag}' (see --help)`);
    const spec = table[name];
    let raw: string | boolean;
    if (spec.type === "boolean") {
      if (eq >= 0) throw new UsageError(`${flag} takes no value`);
      raw = true;
    } else if (eq >= 0) {
      raw = arg.slice(eq + 1);
    } else {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("-") && !/^-\.?\d/.test(next))) {
        throw new UsageError(`${flag} needs a value (see --help)`);
      }
      raw = next;
      i++;
    }
    values[name] = check(flag, name, raw, spec);
  }
  return { values, help };
}

/**
 * The JSON object in the file `flag` names; errors are one line naming both (what the object
 * holds, `contents`, completes "expected a JSON object of …").
 */
export async function readJsonObject(
  flag: string,
  path: string,
  contents: string,
): Promise<Record<string, unknown>> {
  let json: unknown;
  try {
    json = JSON.parse(await Deno.readTextFile(path));
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound
      ? "no such file"
      : e instanceof SyntaxError
      ? `not valid JSON (${e.message})`
      : (e as Error).message;
    throw new UsageError(`${flag} ${path}: ${why}`);
  }
  if (json === null || typeof json !== "object" || Array.isArray(json)) {
    throw new UsageError(`${flag} ${path}: expected a JSON object of ${contents}`);
  }
  return json as Record<string, unknown>;
}

/**
 * The output file of option `flag`: `given`, else the first free name of `fallback` (never
 * overwriting an earlier output); its extension must be `fallback`'s, and a file must be
 * writable there, checked before any work.
 */
export async function outputFile(
  flag: string,
  given: string | undefined,
  fallback: string,
): Promise<string> {
  const ext = extname(fallback);
  if (given !== undefined && !given.toLowerCase().endsWith(ext)) {
    throw new UsageError(`${flag} ${given}: give a name ending in ${ext}`);
  }
  const path = given ?? await firstFreeName(fallback);
  await checkWritableFile(path, `${flag} ${path}`).catch((e) => {
    throw new UsageError(e.message);
  });
  return path;
}

/**
 * A task's options: `args` (default Deno.args) parsed against `table`, over its defaults;
 * undefined when --help was asked for (the help is printed).
 */
export function taskOptions<T extends OptionTable>(
  usage: string,
  table: T,
  args: string[] = Deno.args,
): OptionValues<T> | undefined {
  const { values, help } = parseFlags(args, table);
  if (help) {
    console.log(helpText(usage, table));
    return undefined;
  }
  return withDefaults(table, values);
}

/**
 * Options from a JSON file, checked like flags; errors name the file. `skip`: names a file may
 * not set (e.g. "config" itself).
 */
export async function readConfigFile(
  path: string,
  table: OptionTable,
  skip: string[] = [],
): Promise<Record<string, string | number | boolean>> {
  const json = await readJsonObject("--config", path, "option names and values");
  const out: Record<string, string | number | boolean> = {};
  for (const [key, raw] of Object.entries(json)) {
    const name = lookup(table, key);
    if (!name || skip.includes(name)) {
      throw new UsageError(`--config ${path}: unknown option "${key}" (see --help for the names)`);
    }
    out[name] = check(`--config ${path}: "${key}"`, name, raw, table[name]);
  }
  return out;
}

/** Help text: one line per option with its type and range, aliases and defaults. */
export function helpText(usage: string, table: OptionTable, cpuLabel = "CPU profile"): string {
  const show = (v: unknown) =>
    typeof v === "number" && v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential() : String(v);
  const rows = Object.entries(table).map(([name, s]) => {
    const range = rangeText(s);
    const arg = s.type === "boolean"
      ? ""
      : s.choices
      ? ` <${s.choices.join("|")}>`
      : ` <${s.type === "string" ? "value" : s.type}>${range ? ` (${range})` : ""}`;
    const alias = s.aliases?.length
      ? ` (alias ${s.aliases.map((a) => `--${kebab(a)}`).join(", ")})`
      : "";
    const def = s.default === undefined
      ? ""
      : `  [default: ${show(s.default)}${
        s.cpu !== undefined ? `; ${cpuLabel}: ${show(s.cpu)}` : ""
      }]`;
    return [`--${kebab(name)}${arg}`, `${s.help}${alias}${def}`];
  });
  rows.push(["--help", "show this help"]);
  const w = Math.min(36, Math.max(...rows.map(([f]) => f.length)));
  return [
    usage,
    "",
    "Options (each also accepted with underscores, e.g. --batch_size):",
    ...rows.map(([f, h]) => `  ${f.padEnd(w)}  ${h}`),
  ].join("\n");
}

/** A warning line on stderr (never starts with "error"). */
export function warn(msg: string): void {
  console.error(`warning: ${msg}`);
}

/**
 * Run a task's main: a UsageError is one line with exit code 2, any other error one line with
 * exit code 1 (the stack with FLOWGPU_DEBUG=1). Exit hooks (temporary files, locks) run first.
 */
export async function runMain(main: () => Promise<number | void>): Promise<void> {
  let code = 0;
  try {
    code = (await main()) ?? 0;
  } catch (e) {
    const err = e as Error;
    const msg = String(err?.message ?? err).split("\n")[0];
    console.error(`error: ${msg}`);
    if (Deno.env.get("FLOWGPU_DEBUG")) console.error(err?.stack);
    code = e instanceof UsageError ? 2 : 1;
  }
  runExitHooks();
  Deno.exit(code);
}
