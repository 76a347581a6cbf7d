/**
 * The shader conventions of docs/CONVENTIONS.md, checked on every op family's WGSL (linear and
 * attention tile their own and are exempt): the uniform at @binding(0), storage bindings after it,
 * the workgroup size from the prelude's `WG` rather than a literal, and no second copy of the
 * prelude's helpers. (Reads before writes within an entry point is left to review.)
 */
import { assert } from "./task_run.ts";
import { shader, WORKGROUP_SIZE } from "../src/ops/common.ts";

const EXEMPT = new Set(["linear.wgsl", "attention.wgsl", "common.wgsl"]);
const dir = new URL("../shaders/", import.meta.url);

Deno.test("op family shaders follow the binding and workgroup-size conventions", async () => {
  const files = [];
  for await (const e of Deno.readDir(dir)) {
    if (e.name.endsWith(".wgsl") && !EXEMPT.has(e.name)) files.push(e.name);
  }
  assert(files.length >= 8, `only ${files.length} op family shaders found`);
  for (const name of files.sort()) {
    const src = await Deno.readTextFile(new URL(name, dir));
    for (const m of src.matchAll(/@binding\((\d+)\)\s+var<uniform>/g)) {
      // optim.wgsl and muon.wgsl have two uniforms (shape, per-step hyper-parameters): 0 and 1.
      assert(
        m[1] === "0" || ((name === "optim.wgsl" || name === "muon.wgsl") && m[1] === "1"),
        `${name}: uniform at ${m[1]}`,
      );
    }
    const storage = [...src.matchAll(/@binding\((\d+)\)\s+var<storage/g)].map((m) => +m[1]);
    if (src.includes("var<uniform>")) {
      assert(storage.every((b) => b > 0), `${name}: a storage buffer at binding 0`);
    }
    assert(
      !/@workgroup_size\(\s*\d+\s*\)/.test(src),
      `${name}: literal 1D workgroup size (use WG)`,
    );
    assert(!/const WG\b/.test(src) && !/fn index\(/.test(src), `${name}: redeclares the prelude`);
  }
  assert(shader("").includes(`const WG: u32 = ${WORKGROUP_SIZE}u;`), "prelude WG = WORKGROUP_SIZE");
});
