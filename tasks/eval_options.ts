/**
 * `deno task eval`'s command line: the option table (shared sampling and checkpoint rows from
 * sampling.ts), the settings to score (one, or the --sweep grid from flags or a JSON file), and
 * the output paths, all checked before any GPU work.
 */
import type { OptionTable } from "../mod.ts";
import { type OptionValues, outputFile, readJsonObject, UsageError } from "./cli.ts";
import { checkWritableFile } from "./files.ts";
import { CHECKPOINT_OPTION, NO_EMA_OPTION, SAMPLING_OPTIONS } from "./sampling.ts";

const SOLVERS: readonly string[] = SAMPLING_OPTIONS.solver.choices;
const DEFAULT_PLOT = "eval_sweep.png";

/** Why a sweep list item is wrong, or undefined: solvers, step counts, CFG scales. */
const ITEM = {
  solver: (s: string) => SOLVERS.includes(s) ? undefined : `unknown solver '${s}'`,
  steps: (s: string) =>
    /^\d+$/.test(s) && Number(s) >= 1 ? undefined : `step count '${s}' is not an integer ≥ 1`,
  cfg: (s: string) =>
    s !== "" && Number(s) >= 0 ? undefined : `CFG scale '${s}' is not a number ≥ 0`,
};

/** A comma-list option's check: every item passes `item`. */
function listOf(item: (s: string) => string | undefined, what: string) {
  return (v: string) => {
    for (const p of v.split(",")) {
      const why = item(p.trim());
      if (why) return `expects a comma list of ${what}: ${why}`;
    }
    return undefined;
  };
}

export const OPTIONS = {
  checkpoint: CHECKPOINT_OPTION,
  num_samples: {
    type: "int",
    help: "images to generate (class-balanced), and real images for the floor",
    default: 10000,
    min: 4, // k-NN radii need 3 other points
    max: 100_000,
  },
  ...SAMPLING_OPTIONS,
  batch: { type: "int", help: "images per batched forward while sampling", default: 250, min: 1 },
  data: {
    type: "string",
    help: "folder with t10k-images/labels-idx*-ubyte(.gz) (and train-* for the floor); " +
      "default: Debian's dataset-fashion-mnist",
  },
  classifier: {
    type: "string",
    help: "feature classifier: a shipped name or a .safetensors path",
    default: "fashion-mnist-classifier",
  },
  no_ema: NO_EMA_OPTION,
  no_floor: { type: "boolean", help: "skip the floor (real training images)" },
  sweep: { type: "boolean", help: "score every --sweep-solvers × --sweep-steps × --sweep-cfg" },
  sweep_solvers: {
    type: "string",
    help: "comma list of solvers for --sweep",
    default: "euler,heun",
    check: listOf(ITEM.solver, "solvers"),
  },
  sweep_steps: {
    type: "string",
    help: "comma list of step counts for --sweep (dopri5 picks its own)",
    default: "10,25,50",
    check: listOf(ITEM.steps, "step counts"),
  },
  sweep_cfg: {
    type: "string",
    help: "comma list of CFG scales for --sweep (default: --cfg-scale)",
    check: listOf(ITEM.cfg, "CFG scales"),
  },
  sweep_file: {
    type: "string",
    help: 'JSON grid {"solvers": [...], "steps": [...], "cfg": [...]} (implies --sweep)',
  },
  plot: {
    type: "string",
    help: `PNG of FD against NFE per solver, with --sweep (default: the first free name of ` +
      `${DEFAULT_PLOT}, eval_sweep-2.png, …)`,
  },
  json: { type: "string", help: "also write the JSON result to this file" },
} satisfies OptionTable;

export type Values = OptionValues<typeof OPTIONS>;

export const USAGE = "Usage: deno task eval --checkpoint PATH|NAME [options]\n\n" +
  "Scores generated images against the Fashion-MNIST test set with the feature classifier\n" +
  "(weights/fashion-mnist-classifier.safetensors): FD, class accuracy, precision, recall (k = 3),\n" +
  "and the same for real training images (the floor). Prints a table and a JSON line.\n\n" +
  "Examples:\n" +
  "  deno task eval --checkpoint runs/latest\n" +
  "  deno task eval --checkpoint runs/latest --num-samples 2000 --solver heun --num-steps 25\n" +
  "  deno task eval --checkpoint runs/latest --sweep --sweep-solvers euler,heun " +
  "--sweep-steps 10,25,50 --sweep-cfg 1,3";

/** One sampling configuration. */
export interface Setting {
  solver: string;
  steps: number;
  cfg: number;
}

const split = (s: string) => s.split(",").map((p) => p.trim());

/** A --sweep-file's grid, each list checked like the flags'. */
async function sweepFile(path: string): Promise<Partial<Record<keyof typeof ITEM, string[]>>> {
  const g = await readJsonObject("--sweep-file", path, '"solvers", "steps" and "cfg" lists');
  const out: Partial<Record<keyof typeof ITEM, string[]>> = {};
  for (const [key, v] of Object.entries(g)) {
    const name = ({ solvers: "solver", steps: "steps", cfg: "cfg", cfg_scales: "cfg" } as const)[
      key as "solvers"
    ];
    if (!name) {
      throw new UsageError(`--sweep-file ${path}: unknown key "${key}" (solvers, steps, cfg)`);
    }
    if (!Array.isArray(v) || v.length === 0) {
      throw new UsageError(`--sweep-file ${path}: "${key}" must be a non-empty array`);
    }
    const items = v.map(String);
    for (const s of items) {
      const why = ITEM[name](s);
      if (why) throw new UsageError(`--sweep-file ${path}: "${key}" has ${why}`);
    }
    out[name] = items;
  }
  return out;
}

/** The settings to score: one, or the sweep grid (from flags or a JSON file). */
export async function settings(o: Values): Promise<Setting[]> {
  if (!o.sweep && !o.sweep_file) {
    return [{ solver: o.solver, steps: o.num_steps, cfg: o.cfg_scale }];
  }
  const file = o.sweep_file ? await sweepFile(o.sweep_file) : {};
  const solvers = file.solver ?? split(o.sweep_solvers);
  const steps = (file.steps ?? split(o.sweep_steps)).map(Number);
  const cfgs = (file.cfg ?? (o.sweep_cfg ? split(o.sweep_cfg) : [String(o.cfg_scale)])).map(Number);
  const out: Setting[] = [];
  for (const solver of solvers) {
    // An adaptive solver picks its own steps: one run per CFG scale.
    for (const st of solver === "dopri5" ? [0] : steps) {
      for (const cfg of cfgs) out.push({ solver, steps: st, cfg });
    }
  }
  return out;
}

/** The output paths, checked writable before any work; the default plot never overwrites. */
export async function outputs(
  o: Values,
  sweep: boolean,
): Promise<{ plot?: string; json?: string }> {
  if (o.plot !== undefined && !sweep) throw new UsageError("--plot: the plot is of a --sweep");
  const json = o.json;
  if (json !== undefined) {
    await checkWritableFile(json, `--json ${json}`).catch((e) => {
      throw new UsageError(e.message);
    });
  }
  return { plot: sweep ? await outputFile("--plot", o.plot, DEFAULT_PLOT) : undefined, json };
}
