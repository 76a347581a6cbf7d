/**
 * `deno task web`: build the web page (web/) into a static folder and serve it on localhost.
 * Run with --help for the flags.
 */
import type { OptionTable } from "../mod.ts";
import { buildWeb, DEFAULT_OUT, serveDir } from "../web/build.ts";
import { runMain, taskOptions, UsageError } from "./cli.ts";

const OPTIONS = {
  port: {
    type: "int",
    help: "port to serve on (0: any free port)",
    default: 8000,
    min: 0,
    max: 65535,
  },
  hostname: {
    type: "string",
    help: "address to listen on (WebGPU needs a secure context: localhost or https)",
    default: "127.0.0.1",
  },
  out: { type: "string", help: "output folder (emptied first if it is a previous build)" },
  build_only: { type: "boolean", help: "build, print the folder and exit without serving" },
} satisfies OptionTable;

const USAGE = "Usage: deno task web [--port 8000] [--out DIR] [--build-only]\n\n" +
  "Bundles the page (the library's TypeScript and WGSL) into web/dist/, a static folder any\n" +
  "web server can host, then serves it here. Open the URL it prints in a browser with WebGPU.";

async function main(): Promise<number> {
  const o = taskOptions(USAGE, OPTIONS);
  if (!o) return 0;
  const b = await buildWeb(o.out ?? DEFAULT_OUT).catch((e) => {
    throw new UsageError((e as Error).message);
  });
  console.log(
    `built ${b.out} (${b.files.length} files, ${b.ms.toFixed(0)} ms); shipped weights: ` +
      (b.weights.length ? b.weights.join(", ") : "none (the page offers a file picker)"),
  );
  if (o.build_only) return 0;
  let served;
  try {
    served = serveDir(b.out, o.port, o.hostname);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new UsageError(`port ${o.port} is in use: pick another with --port (0: any free one)`);
    }
    throw e;
  }
  const shown = o.hostname === "127.0.0.1" || o.hostname === "0.0.0.0"
    ? served.url.replace(/\/\/[^/:]+/, "//localhost")
    : served.url;
  console.log(`serving ${b.out} at ${shown}  (Ctrl-C to stop)`);
  await served.server.finished;
  return 0;
}

if (import.meta.main) await runMain(main);
