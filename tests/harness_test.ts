/**
 * The op harness catches wrong kernels: deliberately wrong GPU results (one element off by a few
 * percent, a transposed output) fail `checkOp`; an error on a small element that a max|ref|-only
 * bound would pass fails the element-wise bound; a half-specified backward is an error.
 */
import assert from "node:assert/strict";
import { assertAllClose, assertClose, checkOp, type OpTest, opTolerance } from "./harness.ts";
import type { Kernels, Tensor } from "../src/gpu/kernels.ts";

// Deliberately wrong "copies" of a [R, C] matrix: one element off by 3% of (1 + |x|), or the
// transpose.
const WRONG = `
struct P { n: u32, rows: u32, cols: u32, bad: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(64)
fn copy_one_off(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x;
  if (i >= p.n) { return; }
  y[i] = select(x[i], x[i] + 0.03 * (1.0 + abs(x[i])), i == p.bad);
}

@compute @workgroup_size(64)
fn copy_transposed(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x;
  if (i >= p.n) { return; }
  let r = i / p.cols;
  let c = i % p.cols;
  y[i] = x[c * p.rows + r];
}

@compute @workgroup_size(64)
fn copy(@builtin(global_invocation_id) g: vec3u) {
  let i = g.x;
  if (i >= p.n) { return; }
  y[i] = x[i];
}
`;

const R = 6, C = 7;
function run(entry: string, bad = 17) {
  return (k: Kernels, t: Record<string, Tensor>) => [
    k.dispatch(WRONG, entry, [k.uniform([R * C, R, C, bad]), t.x, t.y], Math.ceil(R * C / 64)),
  ];
}

function copySpec(entry: string): OpTest {
  return {
    name: `harness self-test ${entry}`,
    inputs: { x: [R, C] },
    outputs: { y: [R, C] },
    ref: ({ x }) => ({ y: Float64Array.from(x) }),
    gpu: run(entry),
  };
}

Deno.test("checkOp passes a correct kernel", () => checkOp(copySpec("copy")));

Deno.test("checkOp catches one element off by a few percent", async () => {
  await assert.rejects(() => checkOp(copySpec("copy_one_off")), /forward y: \[17\]/);
});

Deno.test("checkOp catches a transposed output", async () => {
  await assert.rejects(() => checkOp(copySpec("copy_transposed")), /forward y/);
});

Deno.test("checkOp refuses a half-specified backward", async () => {
  const spec = copySpec("copy");
  await assert.rejects(
    () => checkOp({ ...spec, refBackward: (_x, dy) => ({ x: dy.y }) }),
    /give both refBackward and gpuBackward.*only refBackward/,
  );
  await assert.rejects(
    () => checkOp({ ...spec, gpuBackward: run("copy") }),
    /only gpuBackward/,
  );
});

Deno.test("element-wise bound: a small element 5% off fails where max|ref| alone passes", () => {
  const ref = Float64Array.from({ length: 50 }, (_, i) => i === 3 ? 1e-3 : Math.sin(i) + 1.5);
  const got = Float64Array.from(ref);
  got[3] *= 1.05; // |error| 5e-5: under 1e-4·max|ref|, over 1e-5·max|ref| + 1e-4·|ref|
  assert.doesNotThrow(() => assertClose("max|ref| bound", got, ref, 1e-4));
  assert.throws(() => assertAllClose("op bound", got, ref, opTolerance(ref)), /op bound: \[3\]/);
  got[3] = Number.NaN;
  assert.throws(() => assertAllClose("NaN", got, ref, opTolerance(ref)), /NaN: \[3\]/);
});
