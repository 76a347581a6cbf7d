/**
 * The web page in a real browser: `deno task web`'s build bundled into a temporary folder, served
 * with the task's server, opened in headless Chromium (Debian's, driven by playwright-core; on a
 * machine without a GPU its WebGPU is SwiftShader, slow, so every shape is tiny). One browser for
 * all checks: the bundle holds no Deno-only code; the page loads without console errors; a page
 * without WebGPU says so; a class grid from a picked tiny checkpoint matches `deno task generate`'s
 * PNG for the same seed within 2/255 per pixel; the first 3 live training losses equal
 * `deno task train`'s (same seed, same data) to 1e-4 relative; and the downloaded checkpoint holds
 * the same weights and loads in `deno task generate`. UPDATE_SCREENSHOTS=1 writes the README's
 * screenshot (docs/web-page.png).
 */
import { randomWeights } from "./random_weights.ts";
import { join } from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/datasets.ts
import { Image } from "npm:imagescript@1.3.1";
import { buildWeb, JS_DIR, serveDir } from "../web/build.ts";
import { type DiTConfig, resolveConfig } from "../src/model/config.ts";
import { decodeCheckpoint, encodeCheckpoint } from "../src/io/model_io.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { assert, expectOk, runTask } from "./task_run.ts";

export const CHROMIUM = "/usr/bin/chromium";
/**
 * Chromium's flags: WebGPU on (`--enable-unsafe-webgpu`; with no GPU, Chromium gives SwiftShader's
 * Vulkan as the adapter, which playwright's headless defaults already select), root without a
 * sandbox, and nothing that reaches for the network (this machine has none).
 */
export const CHROMIUM_ARGS = [
  "--enable-unsafe-webgpu",
  "--no-sandbox",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

const TIMEOUT = 600_000;
const SCREENSHOT = new URL("../docs/web-page.png", import.meta.url).pathname;
const haveChromium = await Deno.stat(CHROMIUM).then(() => true, () => false);
if (!haveChromium && !Deno.env.get("CI")) {
  console.warn(`web_test: ${CHROMIUM} is missing (apt-get install chromium): skipped`);
}

/** The page's state object (web/src/app.ts). */
interface PageState {
  status: string;
  adapter?: { name: string; fallback: boolean; features: string[] };
  model?: { source: string; config: DiTConfig };
  generations: number;
  previews: number;
  training: string;
  losses: number[];
  errors: string[];
}

const pageState = (page: Page) =>
  page.evaluate(() => (globalThis as unknown as { flowgpuPage: PageState }).flowgpuPage);

/** Wait until the page's state satisfies `cond` (a function body over `s`), or fail. */
async function waitState(page: Page, cond: string, what: string): Promise<PageState> {
  try {
    await page.waitForFunction(
      `(() => { const s = globalThis.flowgpuPage; return s && (s.errors.length > 0 || (${cond})); })()`,
      null,
      { timeout: TIMEOUT, polling: 100 },
    );
  } catch (e) {
    throw new Error(`${what}: ${(e as Error).message.split("\n")[0]}`);
  }
  const s = await pageState(page);
  assert(s.errors.length === 0, `${what}: the page shows an error: ${s.errors.join("; ")}`);
  return s;
}

/** A canvas's RGBA pixels (page scripts as text: this file is type-checked without the DOM). */
function canvasPixels(page: Page, id: string) {
  return page.evaluate(`(() => {
    const c = document.getElementById(${JSON.stringify(id)});
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    return { width: c.width, height: c.height, data: Array.from(d) };
  })()`) as Promise<{ width: number; height: number; data: number[] }>;
}

/** Files and values each check shares. */
interface Ctx {
  dir: string;
  url: string;
  browser: BrowserContext;
  page: Page;
  consoleErrors: string[];
}

async function checkBundle(dist: string, files: string[]): Promise<void> {
  const js = files.filter((f) => f.startsWith(JS_DIR) && f.endsWith(".js"));
  assert(js.includes(`${JS_DIR}/flowgpu.js`) && js.includes(`${JS_DIR}/app.js`), `bundles: ${js}`);
  let wgsl = 0;
  for (const f of js) {
    const text = await Deno.readTextFile(join(dist, f));
    // Deno-only code paths (Deno.readFile, ...) or imports a browser cannot resolve.
    const deno = text.match(/\bDeno\.[A-Za-z]+/);
    assert(!deno, `${f} uses ${deno?.[0]}: the browser bundle must not`);
    const spec = text.match(/(?:from|import)\s*\(?\s*["'](?:npm:|node:|jsr:|[^"']+\.ts["'])[^"']*/);
    assert(!spec, `${f} imports ${spec?.[0]}`);
    assert(!/from\s*["'][^"']+\.wgsl["']/.test(text), `${f} imports WGSL instead of inlining it`);
    wgsl += (text.match(/@compute/g) ?? []).length;
    // Every asset the code resolves against its own URL is in the build (weights: see index.json).
    for (
      const m of text.matchAll(/new URL\(\s*["'`]([^"'`]+)["'`]\s*,\s*import\.meta\.url\s*\)/g)
    ) {
      if (m[1].includes("${")) continue;
      const target = new URL(m[1], `file://${join(dist, f)}`).pathname;
      assert(target.startsWith(dist + "/"), `${f}: ${m[1]} resolves outside the build`);
      if (!target.endsWith("index.json")) {
        await Deno.stat(target).catch(() => {
          throw new Error(`${f} fetches ${m[1]}, which the build lacks`);
        });
      }
    }
  }
  assert(wgsl >= 20, `only ${wgsl} WGSL compute entry points inlined in the bundle`);
  console.log(`  bundle: ${js.length} JS files, ${wgsl} WGSL entry points inlined`);
}

async function checkGenerate(c: Ctx): Promise<void> {
  const cfg = resolveConfig({ preset: "tiny", image_size: 8, in_channels: 1, num_classes: 3 });
  const rng = new Rng(TEST_SEED ^ 0x3eb);
  const ckpt = join(c.dir, "tiny.safetensors");
  await Deno.writeFile(
    ckpt,
    encodeCheckpoint({
      cfg,
      params: randomWeights(cfg, rng, 0.5).flat,
      ema: randomWeights(cfg, rng, 0.5).flat,
    }),
  );
  const per = 2, steps = 4, cfgScale = 2.5, solver = "heun", seed = 7;
  const png = join(c.dir, "deno.png");
  // The Deno sampler runs while the browser samples.
  const deno = runTask("generate", [
    ...["--checkpoint", ckpt, "--class_grid", "--samples_per_class", String(per)],
    ...["--num_steps", String(steps), "--cfg_scale", String(cfgScale), "--solver", solver],
    ...["--seed", String(seed), "--out", png],
  ]);
  const { page } = c;
  await page.setInputFiles("#ckpt", ckpt);
  await waitState(
    page,
    "s.model && s.model.source === 'tiny.safetensors'",
    "loading the checkpoint",
  );
  await page.selectOption("#gen-class", "grid");
  await page.fill("#gen-count", String(per));
  await page.fill("#gen-steps", String(steps));
  await page.fill("#gen-cfg", String(cfgScale));
  await page.selectOption("#gen-solver", solver);
  await page.fill("#gen-seed", String(seed));
  const t0 = performance.now();
  await page.click("#gen-go");
  // While sampling: progress with images/s, and the grid redrawn from the state x_t.
  await page.waitForFunction(
    `/images\\/s/.test(document.getElementById("gen-status").textContent)`,
    null,
    { timeout: TIMEOUT },
  );
  const s = await waitState(page, "s.generations >= 1", "generating");
  const ms = performance.now() - t0;
  assert(s.previews >= 2, `the grid was drawn ${s.previews} times while sampling ${steps} steps`);
  expectOk(await deno, "deno task generate");
  const want = await Image.decode(await Deno.readFile(png));
  const got = await canvasPixels(page, "gen-canvas");
  assert(
    got.width === want.width && got.height === want.height,
    `canvas ${got.width}×${got.height}, the PNG is ${want.width}×${want.height}`,
  );
  let worst = 0, unclipped = 0, sum = 0;
  for (let i = 0; i < got.data.length; i += 4) {
    for (let ch = 0; ch < 3; ch++) {
      worst = Math.max(worst, Math.abs(got.data[i + ch] - want.bitmap[i + ch]));
    }
    const v = want.bitmap[i];
    if (v > 0 && v < 255) unclipped++;
    sum += Math.abs(got.data[i] - want.bitmap[i]);
  }
  const n = got.data.length / 4;
  // The grid is an image, not a blank or saturated one: most pixels are mid-grey levels.
  assert(unclipped > 0.4 * n, `only ${unclipped}/${n} reference pixels are inside (0, 255)`);
  console.log(
    `  class grid ${got.width}×${got.height} (3 classes × ${per}, ${solver} ${steps} steps, ` +
      `CFG ${cfgScale}) in ${(ms / 1000).toFixed(1)} s: max |page − deno task generate| = ` +
      `${worst}/255, mean ${(sum / n).toFixed(3)}/255`,
  );
  assert(worst <= 2, `a pixel differs from deno task generate's by ${worst}/255 (> 2)`);
}

async function checkTraining(c: Ctx): Promise<void> {
  const steps = 3, batch = 2, lr = 0.003, seed = 5;
  const out = join(c.dir, "runs");
  // deno task train, with the page's options spelled out (the CPU profile's where they matter).
  const deno = runTask("train", [
    ...["--preset", "tiny", "--dataset", "default", "--steps", String(steps)],
    ...["--batch_size", String(batch), "--lr", String(lr), "--seed", String(seed)],
    ...["--warmup", "50", "--ema_decay", "0.99", "--sample_every", "0", "--ckpt_every", "0"],
    ...["--out", out, "--name", "deno"],
  ]);
  const { page } = c;
  await page.fill("#train-steps", String(steps));
  await page.fill("#train-batch", String(batch));
  await page.fill("#train-lr", String(lr));
  await page.fill("#train-seed", String(seed));
  await page.fill("#train-sample-every", "0");
  const t0 = performance.now();
  await page.click("#train-go");
  const s = await waitState(page, "s.training === 'done'", "training");
  const ms = performance.now() - t0;
  expectOk(await deno, "deno task train");
  const rows = (await Deno.readTextFile(join(out, "deno", "metrics.jsonl"))).trim().split("\n")
    .map((l) => JSON.parse(l) as { step: number; loss: number });
  const want = rows.filter((r) => r.step <= steps).map((r) => r.loss);
  assert(want.length === steps, `deno task train logged ${want.length} of ${steps} losses`);
  assert(s.losses.length === steps, `the page has ${s.losses.length} losses, want ${steps}`);
  let worst = 0;
  for (let i = 0; i < steps; i++) {
    worst = Math.max(worst, Math.abs(s.losses[i] - want[i]) / Math.abs(want[i]));
  }
  console.log(
    `  training: ${steps} steps of batch ${batch} in ${(ms / 1000).toFixed(1)} s; losses ` +
      `${s.losses.map((v) => v.toFixed(6)).join(", ")} vs deno task train ` +
      `${want.map((v) => v.toFixed(6)).join(", ")}: max relative difference ${
        worst.toExponential(2)
      }`,
  );
  assert(worst <= 1e-4, `losses differ from deno task train's by ${worst} relative (> 1e-4)`);

  // The downloaded checkpoint: the same weights as deno task train's, and generate reads it.
  const [download] = await Promise.all([
    page.waitForEvent("download", { timeout: TIMEOUT }),
    page.click("#train-download"),
  ]);
  const file = join(c.dir, "page.safetensors");
  await download.saveAs(file);
  const mine = decodeCheckpoint(await Deno.readFile(file));
  const theirs = decodeCheckpoint(
    await Deno.readFile(join(out, "deno", "checkpoints", "final.safetensors")),
  );
  assert(JSON.stringify(mine.cfg) === JSON.stringify(theirs.cfg), "checkpoint configs differ");
  assert(mine.state?.step === steps, `downloaded checkpoint at step ${mine.state?.step}`);
  for (const k of ["params", "ema", "m", "v"] as const) {
    const a = mine[k]!, b = theirs[k]!;
    let num = 0, den = 0;
    for (let i = 0; i < a.length; i++) {
      num += (a[i] - b[i]) ** 2;
      den += b[i] ** 2;
    }
    const rel = Math.sqrt(num / den);
    assert(rel < 1e-4, `downloaded ${k} differ from deno task train's by ${rel} (relative L2)`);
  }
  expectOk(
    await runTask("generate", [
      ...["--checkpoint", file, "--num_samples", "1", "--num_steps", "1"],
      ...["--out", join(c.dir, "from-page.png")],
    ]),
    "deno task generate on the downloaded checkpoint",
  );
}

async function checkNoWebGpu(c: Ctx): Promise<void> {
  const page = await c.browser.newPage();
  try {
    await page.addInitScript("delete Navigator.prototype.gpu");
    await page.goto(c.url);
    await page.waitForFunction(
      () =>
        (globalThis as unknown as { flowgpuPage?: PageState }).flowgpuPage?.status === "no-webgpu",
      null,
      { timeout: 30_000 },
    );
    const text = await page.textContent("#nogpu");
    assert(
      (await page.isVisible("#nogpu")) && /no WebGPU/i.test(text ?? ""),
      `no clear message without WebGPU: '${text}'`,
    );
    assert(await page.isDisabled("#train-go"), "Train is enabled without WebGPU");
  } finally {
    await page.close();
  }
}

Deno.test({
  name:
    "web page in headless Chromium: bundle, load, class grid vs deno task generate, live training",
  ignore: !haveChromium && !Deno.env.get("CI"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    const dir = await Deno.makeTempDir({ prefix: "flowgpu_web_" });
    const dist = join(dir, "dist");
    // Shipped weights: a tiny stand-in under the shipped name (the real ones are too big here).
    const weights = join(dir, "weights");
    await Deno.mkdir(weights);
    const shipped = resolveConfig({
      preset: "tiny",
      image_size: 4,
      in_channels: 1,
      num_classes: 2,
    });
    const rng = new Rng(TEST_SEED ^ 0x5419);
    await Deno.writeFile(
      join(weights, "fashion-mnist-small.safetensors"),
      encodeCheckpoint({
        cfg: shipped,
        params: randomWeights(shipped, rng, 0.5).flat,
        kind: "ema",
      }),
    );
    const built = await buildWeb(dist, { weights });
    assert(built.weights.join() === "fashion-mnist-small", `shipped weights: ${built.weights}`);
    await t.step(
      "the build bundles the page with no Deno-only code",
      () => checkBundle(built.out, built.files),
    );
    const { server, url } = serveDir(built.out, 0);
    const profile = join(dir, "profile");
    const browser = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1280, height: 1000 },
      acceptDownloads: true,
    });
    try {
      const page = await browser.newPage();
      const consoleErrors: string[] = [];
      page.on("console", (m) => {
        if (m.type() === "error") consoleErrors.push(m.text());
      });
      page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e.message}`));
      const c: Ctx = { dir, url, browser, page, consoleErrors };
      await t.step("the page loads and reports the adapter", async () => {
        await page.goto(url);
        const s = await waitState(page, "s.status !== 'starting'", "starting");
        assert(s.status === "ready", `page status ${s.status}`);
        const m = await waitState(page, "s.model", "loading the shipped weights");
        assert(
          m.model!.source.startsWith("fashion-mnist-small") &&
            m.model!.config.image_size === 4,
          `the page loaded ${JSON.stringify(m.model)}, not the shipped weights`,
        );
        console.log(
          `  adapter: ${s.adapter!.name.trim()} (fallback ${s.adapter!.fallback}, features ` +
            `${s.adapter!.features.join(", ") || "none"})`,
        );
        assert(
          (await page.textContent("#adapter"))?.includes("WebGPU adapter"),
          "no adapter line",
        );
      });
      await t.step(
        "a class grid matches deno task generate's within 2/255",
        () => checkGenerate(c),
      );
      await t.step("live training losses equal deno task train's", () => checkTraining(c));
      if (Deno.env.get("UPDATE_SCREENSHOTS") === "1") {
        await page.screenshot({ path: SCREENSHOT, fullPage: true });
        console.log(`  wrote ${SCREENSHOT}`);
      }
      await t.step("no console errors", () => {
        assert(consoleErrors.length === 0, `console errors: ${consoleErrors.join(" | ")}`);
      });
      await t.step("without WebGPU the page says so", () => checkNoWebGpu(c));
    } finally {
      await browser.close();
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
