/**
 * mod.ts imported by URL: the repository served on a loopback HTTP server, a fresh Deno process
 * imports http://127.0.0.1:PORT/mod.ts and runs a kernel (the model's velocity) on the adapter,
 * and finds the shipped weights by name on the same server (resolveWeights, relative to the URL).
 */
import assert from "node:assert/strict";
import { join, normalize } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

Deno.test("mod.ts works when imported by URL", async () => {
  const ac = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: ac.signal, onListen() {} },
    async (req) => {
      const path = normalize(join(root, decodeURIComponent(new URL(req.url).pathname)));
      if (!path.startsWith(root)) return new Response("forbidden", { status: 403 });
      try {
        const body = await Deno.readFile(path);
        const type = path.endsWith(".ts") ? "application/typescript" : "text/plain";
        return new Response(body, { headers: { "content-type": type } });
      } catch {
        return new Response("not found", { status: 404 });
      }
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}/mod.ts`;
  const script = `
    const m = await import(${JSON.stringify(url)});
    const model = await m.createModel({ preset: "tiny", image_size: 8, in_channels: 1, num_classes: 3 }, { seed: 1 });
    const x = new Float32Array(2 * 64).map((_, i) => Math.sin(i));
    const v = await model.velocity(x, new Float32Array([0.25, 0.75]), new Int32Array([0, 3]));
    const href = m.resolveWeights("fashion-mnist-classifier");
    const w = m.decodeClassifier(new Uint8Array(await (await fetch(href)).arrayBuffer()));
    console.log(JSON.stringify({ n: v.length, finite: v.every(Number.isFinite), params: model.layout.total, href, widths: w.info.widths }));
  `;
  // A copy of the lock file: npm packages resolve as pinned (no registry needed), and the
  // served modules' hashes do not end up in the repository's lock.
  const lock = await Deno.makeTempFile({ suffix: ".lock" });
  await Deno.copyFile(join(root, "deno.lock"), lock);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      // Reload only the served origin: npm packages come from the usual cache.
      args: ["eval", `--lock=${lock}`, `--reload=http://127.0.0.1:${server.addr.port}`, script],
      cwd: root,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert(out.success, `import by URL failed: ${stderr.slice(-2000)}`);
    const r = JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!);
    assert.equal(r.n, 128);
    assert(r.finite);
    assert(r.params > 0);
    const origin = `http://127.0.0.1:${server.addr.port}`;
    assert.equal(r.href, `${origin}/weights/fashion-mnist-classifier.safetensors`);
    assert.equal(r.widths.join(), "784,512,256,10");
  } finally {
    ac.abort();
    await server.finished;
    await Deno.remove(lock);
  }
});
