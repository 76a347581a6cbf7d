/**
 * `deno task export-weights`: a checkpoint → the shipped form (EMA weights in F16, config
 * metadata, provenance), e.g. weights/fashion-mnist-small.safetensors. Run with --help.
 */
import { decodeCheckpoint, encodeShippedWeights, type OptionTable } from "../mod.ts";
import { outputFile, runMain, taskOptions, UsageError, warn } from "./cli.ts";
import { exitOnSignals, writeFileAtomic } from "./files.ts";
import { readCheckpoint, resolveCheckpoint } from "./sampling.ts";

const DEFAULT_OUT = "exported.safetensors";
/** Size budget of weights committed to the repository. */
const BUDGET_MIB = 16;

const OPTIONS = {
  checkpoint: {
    type: "string",
    help: "checkpoint .safetensors (path or URL), or a run directory (its final checkpoint)",
  },
  out: {
    type: "string",
    help: `output .safetensors (default: the first free name of ${DEFAULT_OUT}, …-2, …)`,
  },
  no_ema: { type: "boolean", help: "export the raw weights instead of the EMA weights" },
} satisfies OptionTable;

const USAGE = "Usage: deno task export-weights --checkpoint PATH [--out FILE]\n\n" +
  "Writes a checkpoint's EMA weights in F16 (pos_embed in F32) with its config and training\n" +
  "options: the form of the weights shipped in weights/, loaded by generate and eval like any\n" +
  "checkpoint. Example:\n" +
  "  deno task export-weights --checkpoint runs/small --out weights/fashion-mnist-small.safetensors";

async function main(): Promise<number> {
  const o = taskOptions(USAGE, OPTIONS);
  if (!o) return 0;
  const path = await resolveCheckpoint(o.checkpoint);
  const out = await outputFile("--out", o.out, DEFAULT_OUT);
  const ck = await readCheckpoint(path, !o.no_ema).catch((e) => {
    throw new UsageError(e.message);
  });
  exitOnSignals();
  const info = {
    source: `${ck.kind} weights of ${path}`,
    step: ck.state?.step,
    train_options: ck.state?.options,
  };
  const bytes = encodeShippedWeights(ck.cfg, ck.weights, info, ck.kind === "EMA" ? "ema" : "raw");
  await writeFileAtomic(out, bytes);
  // Round-trip check: what the loader will see.
  const back = decodeCheckpoint(await Deno.readFile(out));
  let err = 0, max = 0;
  for (let i = 0; i < ck.weights.length; i++) {
    err = Math.max(err, Math.abs(back.params[i] - ck.weights[i]));
    max = Math.max(max, Math.abs(ck.weights[i]));
  }
  const mib = bytes.length / 2 ** 20;
  console.log(
    `wrote ${out}: ${mib.toFixed(2)} MiB, ${info.source}` +
      `${info.step !== undefined ? ` (step ${info.step})` : ""}; F16 rounding: max |error| ` +
      `${err.toExponential(2)} (max |w| ${max.toFixed(3)})`,
  );
  if (mib > BUDGET_MIB) warn(`${mib.toFixed(1)} MiB is over the ${BUDGET_MIB} MiB budget`);
  return 0;
}

if (import.meta.main) await runMain(main);
