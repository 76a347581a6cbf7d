/**
 * Option tables: each option's type, defaults (a GPU's and a CPU profile's), range, choices and
 * help, and the checks every command line, `--config` file and saved run's options go through
 * (tasks/cli.ts builds flags and `--help` from the same table). Web-standard.
 */

/** One option: its type, defaults, allowed values and help. */
export interface OptionSpec<T = string | number | boolean> {
  type: "int" | "number" | "string" | "boolean";
  help: string;
  /** Default (on a GPU for the training options); absent: none, or computed (see help). */
  default?: T;
  /** Default of the CPU profile (software adapters), where it differs. */
  cpu?: T;
  /** Allowed values of a string option. */
  choices?: readonly string[];
  /** Inclusive bounds. */
  min?: number;
  max?: number;
  /** Exclusive lower bound (e.g. lr > 0). */
  above?: number;
  /** Exclusive upper bound (e.g. beta1 < 1). */
  below?: number;
  /** Other names (snake_case, without dashes), e.g. "steps" for train_steps. */
  aliases?: readonly string[];
  /** A check beyond type and range: returns why the value is wrong, or undefined. */
  check?(value: T): string | undefined;
}

export type OptionTable = Record<string, OptionSpec>;

/** A value outside its option's type or range; `reason` reads after the option's name. */
export class OptionError extends Error {
  constructor(readonly option: string, readonly reason: string) {
    super(`${option} ${reason}`);
  }
}

/** The range of a numeric option in words, e.g. "≥ 1", "> 0", "in [0, 1)"; "" if unbounded. */
export function rangeText(s: OptionSpec): string {
  const lo = s.above !== undefined
    ? ["(", s.above] as const
    : s.min !== undefined
    ? ["[", s.min] as const
    : undefined;
  const hi = s.below !== undefined
    ? [")", s.below] as const
    : s.max !== undefined
    ? ["]", s.max] as const
    : undefined;
  if (lo && hi) return `in ${lo[0]}${lo[1]}, ${hi[1]}${hi[0]}`;
  if (lo) return `${lo[0] === "(" ? ">" : "≥"} ${lo[1]}`;
  if (hi) return `${hi[0] === ")" ? "<" : "≤"} ${hi[1]}`;
  return "";
}

/**
 * A value converted to the option's type and checked against its range and choices. `raw` is a
 * flag's text or a JSON value; numeric text is accepted for numbers. Throws OptionError.
 */
export function checkOption(name: string, raw: unknown, s: OptionSpec): string | number | boolean {
  const bad = (reason: string): never => {
    throw new OptionError(name, reason);
  };
  let v: string | number | boolean;
  if (s.type === "boolean") {
    if (typeof raw !== "boolean") bad(`is true or false, got ${JSON.stringify(raw)}`);
    v = raw as boolean;
  } else if (s.type === "string") {
    if (typeof raw !== "string") bad(`expects a string, got ${JSON.stringify(raw)}`);
    v = raw as string;
    if (s.choices && !s.choices.includes(v)) {
      bad(`must be one of ${s.choices.join(", ")}, got '${v}'`);
    }
  } else {
    const text = typeof raw === "string" ? raw.trim() : "";
    const n = typeof raw === "number" ? raw : text === "" ? NaN : Number(text);
    if (typeof raw !== "number" && typeof raw !== "string") {
      bad(`expects a number, got ${JSON.stringify(raw)}`);
    }
    if (!Number.isFinite(n)) bad(`expects a number, got '${raw}'`);
    if (s.type === "int" && !Number.isInteger(n)) bad(`expects an integer, got '${raw}'`);
    const outside = (s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max) ||
      (s.above !== undefined && !(n > s.above)) || (s.below !== undefined && !(n < s.below));
    if (outside) bad(`must be ${rangeText(s)}, got ${n}`);
    v = n;
  }
  const why = s.check?.(v as never);
  if (why) bad(why);
  return v;
}

/** The table's defaults (`cpu: true`: with the CPU profile's values over them). */
export function defaultsOf(table: OptionTable, cpu = false): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(table)) {
    const d = cpu && s.cpu !== undefined ? s.cpu : s.default;
    if (d !== undefined) out[name] = d;
  }
  return out;
}

/**
 * Check every field of `values` against `table`: unknown names and values outside a range throw
 * OptionError. Returns the converted values (table order).
 */
export function validateOptions(
  table: OptionTable,
  values: Record<string, unknown>,
): Record<string, string | number | boolean> {
  for (const name of Object.keys(values)) {
    if (!Object.hasOwn(table, name)) throw new OptionError(name, "is not a known option");
  }
  const out: Record<string, string | number | boolean> = {};
  for (const [name, s] of Object.entries(table)) {
    if (values[name] !== undefined) out[name] = checkOption(name, values[name], s);
  }
  return out;
}
