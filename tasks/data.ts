/**
 * `deno task data emoji`: fetch and convert a dataset that is not shipped with the project, once.
 * Prints what was kept. Run with --help for the flags.
 */
import { loadEmoji, type OptionTable } from "../mod.ts";
import { runMain, taskOptions, UsageError } from "./cli.ts";

const OPTIONS = {
  image_size: {
    type: "int",
    help: "side the images are resized to",
    default: 32,
    min: 1,
    max: 64,
  },
  data: { type: "string", help: "folder of the cache file (default data/emoji/ of the checkout)" },
} satisfies OptionTable;

const USAGE = "Usage: deno task data emoji [options]\n\n" +
  "Fetches the npm package emoji-datasource-google through Deno's npm support (about 74 MB,\n" +
  "once), converts its base emoji to a cached uint8 file (data/emoji/emoji_<size>.bin) that\n" +
  "`--dataset emoji` reads, and prints the classes kept and dropped.";

async function main(): Promise<number> {
  const named = Deno.args.length > 0 && !Deno.args[0].startsWith("-");
  const name = named ? Deno.args[0] : undefined;
  const rest = named ? Deno.args.slice(1) : Deno.args;
  const o = taskOptions(USAGE, OPTIONS, rest);
  if (!o) return 0;
  if (name === undefined) throw new UsageError("name a dataset: deno task data emoji (see --help)");
  if (name !== "emoji") throw new UsageError(`unknown dataset "${name}" (known: emoji)`);
  const t0 = performance.now();
  const r = await loadEmoji({ dir: o.data, imageSize: o.image_size, log: (l) => console.log(l) });
  const { cache } = r;
  const size = (await Deno.stat(r.path)).size;
  console.log(
    `${r.built ? "wrote" : "already there:"} ${r.path} (${(size / 1e6).toFixed(2)} MB, ` +
      `${cache.labels.length} images ${cache.imageSize}×${cache.imageSize} RGB, from ${cache.source})` +
      (r.built ? ` in ${((performance.now() - t0) / 1000).toFixed(1)} s` : ""),
  );
  console.log(`train ${r.train.length} images, held out ${r.heldOut.length}`);
  const counts = new Map<number, number>();
  for (const l of cache.labels) counts.set(l, (counts.get(l) ?? 0) + 1);
  console.log("classes kept:");
  cache.classNames.forEach((n, i) => console.log(`  ${i}  ${n}: ${counts.get(i) ?? 0}`));
  const dropped = Object.entries(cache.dropped);
  console.log(
    dropped.length
      ? `dropped (too few images to train on): ${dropped.map(([n, c]) => `${n} (${c})`).join(", ")}`
      : "dropped: none",
  );
  return 0;
}

if (import.meta.main) await runMain(main);
