/**
 * Building the web page into a static folder and serving it (Deno): `deno bundle --platform
 * browser` turns web/src/flowgpu.ts (the browser library) and web/src/app.ts (the page) into
 * assets/js/ (WGSL inlined, shared code in one chunk), and the data the code fetches relative to
 * its module (the embedded Fashion-MNIST subset, shipped weights if present) is copied to the
 * same relative place. The result is plain files: any static host serves it.
 */
import { dirname, join, relative, resolve } from "node:path";

const ROOT = resolve(dirname(new URL(import.meta.url).pathname), "..");
export const WEB_DIR = join(ROOT, "web");
export const DEFAULT_OUT = join(WEB_DIR, "dist");
/** The bundles' folder inside the output: two levels down, as src/*\/*.ts is in the repository. */
export const JS_DIR = "assets/js";
const ENTRIES = ["web/src/flowgpu.ts", "web/src/app.ts"];
const STATIC = ["index.html", "style.css"];
/** Folders the bundled code fetches through `import.meta.url`: [in the build, in the repository]. */
const ASSETS = [["data/fashion-mnist-subset", "data/fashion-mnist-subset"], ["weights", "weights"]];
/** The file that marks a folder as this build's output (so a rebuild may empty it). */
const MARKER = ".flowgpu-web";

export interface BuildResult {
  out: string;
  /** Files written, relative to `out`. */
  files: string[];
  /** Shipped weights copied (file names in weights/). */
  weights: string[];
  ms: number;
}

async function exists(p: string): Promise<boolean> {
  return await Deno.stat(p).then(() => true, () => false);
}

async function copyTree(from: string, to: string, files: string[], out: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const src = join(from, e.name), dst = join(to, e.name);
    if (e.isDirectory) await copyTree(src, dst, files, out);
    else if (e.isFile) {
      await Deno.copyFile(src, dst);
      files.push(relative(out, dst));
    }
  }
}

async function listFiles(dir: string, out: string, files: string[] = []): Promise<string[]> {
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) await listFiles(p, out, files);
    else files.push(relative(out, p));
  }
  return files;
}

export interface BuildOptions {
  /** The folder copied as the build's weights/ (default: the repository's weights/). */
  weights?: string;
}

/** Bundle and copy the page into `out` (emptied first); throws with deno bundle's output. */
export async function buildWeb(out = DEFAULT_OUT, opts: BuildOptions = {}): Promise<BuildResult> {
  const t0 = performance.now();
  out = resolve(out);
  if (out === ROOT || out === WEB_DIR || !relative(out, ROOT).startsWith("..")) {
    throw new Error(`web build: ${out} would hold the repository; choose another output folder`);
  }
  // Emptied only when it is a previous build (or empty): never a folder of the user's.
  const entries = await Array.fromAsync(Deno.readDir(out)).catch((e) => {
    if (e instanceof Deno.errors.NotFound) return [];
    throw e;
  });
  if (entries.length && !entries.some((e) => e.name === MARKER)) {
    throw new Error(
      `web build: ${out} is not empty and not a previous build; choose another folder`,
    );
  }
  await Deno.remove(out, { recursive: true }).catch((e) => {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  });
  await Deno.mkdir(join(out, JS_DIR), { recursive: true });
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--code-splitting",
      "--minify",
      "--sourcemap",
      "linked",
      "--outdir",
      join(out, JS_DIR),
      ...ENTRIES,
    ],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  });
  const r = await cmd.output();
  if (!r.success) {
    const msg = new TextDecoder().decode(r.stderr).trim();
    throw new Error(`deno bundle failed:\n${msg}`);
  }
  for (const f of STATIC) await Deno.copyFile(join(WEB_DIR, f), join(out, f));
  const files = await listFiles(out, out);
  for (const [to, from] of ASSETS) {
    const src = to === "weights" && opts.weights ? resolve(opts.weights) : join(ROOT, from);
    if (await exists(src)) await copyTree(src, join(out, to), files, out);
  }
  // The page learns which weights exist from this list (no failed request when there are none).
  const weights = files.filter((f) => /^weights\/[^/]+\.safetensors$/.test(f))
    .map((f) => f.slice("weights/".length).replace(/\.safetensors$/, "")).sort();
  await Deno.mkdir(join(out, "weights"), { recursive: true });
  await Deno.writeTextFile(join(out, "weights", "index.json"), JSON.stringify({ weights }) + "\n");
  files.push("weights/index.json");
  await Deno.writeTextFile(
    join(out, MARKER),
    "built by deno task web; removed by the next build\n",
  );
  return { out, files: files.sort(), weights, ms: performance.now() - t0 };
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  map: "application/json",
  json: "application/json",
  png: "image/png",
  gz: "application/gzip",
  safetensors: "application/octet-stream",
  md: "text/plain; charset=utf-8",
};

/** A static file handler for `dir` (GET/HEAD; index.html for folders; nothing outside `dir`). */
export function staticHandler(dir: string): (req: Request) => Promise<Response> {
  const base = resolve(dir);
  return async (req) => {
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed", { status: 405, headers: { allow: "GET, HEAD" } });
    }
    let path: string;
    try {
      path = decodeURIComponent(new URL(req.url).pathname);
    } catch {
      return new Response("bad path", { status: 400 });
    }
    let file = resolve(base, "." + path);
    if (file !== base && !file.startsWith(base + "/")) {
      return new Response("not found", { status: 404 });
    }
    try {
      if ((await Deno.stat(file)).isDirectory) file = join(file, "index.html");
      const body = await Deno.readFile(file);
      const ext = file.slice(file.lastIndexOf(".") + 1);
      return new Response(req.method === "HEAD" ? null : body, {
        headers: {
          "content-type": TYPES[ext] ?? "application/octet-stream",
          "content-length": String(body.length),
          "cache-control": "no-cache",
        },
      });
    } catch {
      return new Response("not found", { status: 404 });
    }
  };
}

/** Serve `dir` on `hostname:port` (port 0: any free one); the server and its URL. */
export function serveDir(
  dir: string,
  port: number,
  hostname = "127.0.0.1",
): { server: Deno.HttpServer<Deno.NetAddr>; url: string } {
  const server = Deno.serve({ port, hostname, onListen: () => {} }, staticHandler(dir));
  const host = hostname.includes(":") ? `[${hostname}]` : hostname;
  return { server, url: `http://${host}:${server.addr.port}/` };
}
