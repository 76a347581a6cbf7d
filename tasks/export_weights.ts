/**
 * `deno task export-weights`: a training checkpoint → the shipped form (EMA weights, F16, config
 * metadata, provenance), e.g. weights/fashion-mnist-small.safetensors. Run with --help.
 */
import { join } from "node:path";
import { decodeCheckpoint, readSource } from "../src/io/model_io.ts";
import { writeFileAtomic } from "../src/io/checkpoint.ts";
import { encodeShippedWeights } from "../src/io/weights.ts";
import { type FlagSpec, helpText, parseFlags, runMain, UsageError } from "./cli.ts";

const SPECS: Record<string, FlagSpec> = {
  checkpoint: { kind: "string", help: "training checkpoint .safetensors, or a run directory" },
  out: { kind: "string", help: "output .safetensors" },
  no_ema: { kind: "boolean", help: "export the raw weights instead of the EMA weights" },
};
const DEFAULTS = { out: "weights/fashion-mnist-small.safetensors" };
const USAGE = "Usage: deno task export-weights --checkpoint PATH [--out FILE]\n\n" +
  "Writes a checkpoint's EMA weights in F16 with its config and training options, the form\n" +
  "of the weights shipped in weights/ (loaded by generate and eval like any checkpoint).";

async function main() {
  const { values: v, help } = parseFlags(Deno.args, SPECS);
  if (help) {
    console.log(helpText(USAGE, SPECS, DEFAULTS));
    return;
  }
  if (!v.checkpoint) throw new UsageError("--checkpoint is required");
  let path = String(v.checkpoint);
  const st = await Deno.stat(path).catch(() => undefined);
  if (!st) throw new UsageError(`--checkpoint ${path}: no such file or directory`);
  if (st.isDirectory) path = join(path, "checkpoints", "final.safetensors");
  const c = decodeCheckpoint(await readSource(path));
  const useEma = !v.no_ema && c.ema !== undefined;
  const flat = useEma ? c.ema! : c.params;
  const info = {
    source: `${useEma ? "EMA" : "raw"} weights of ${path}`,
    step: c.state?.step,
    train_options: c.state?.options,
  };
  const out = String(v.out ?? DEFAULTS.out);
  const bytes = encodeShippedWeights(c.cfg, flat, info);
  await writeFileAtomic(out, bytes);
  // Round-trip check: what the loader will see.
  const back = decodeCheckpoint(await Deno.readFile(out));
  let err = 0, max = 0;
  for (let i = 0; i < flat.length; i++) {
    err = Math.max(err, Math.abs(back.params[i] - flat[i]));
    max = Math.max(max, Math.abs(flat[i]));
  }
  const mib = bytes.length / 2 ** 20;
  console.log(
    `wrote ${out}: ${mib.toFixed(2)} MiB, ${info.source}${
      c.state ? ` (step ${c.state.step})` : ""
    }; F16 rounding: max |error| ${err.toExponential(2)} (max |w| ${max.toFixed(3)})`,
  );
  if (mib > 16) console.log(`warning: ${mib.toFixed(1)} MiB is over the 16 MiB budget`);
}

if (import.meta.main) await runMain(main);
