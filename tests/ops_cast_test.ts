/**
 * Precision casts against JS's own f16 rounding (Float16Array: round to nearest even; WGSL
 * allows either neighbour, and a truncating cast would bias the f16 weight copy, so this test
 * asks for nearest-even), over flat buffers whose f16 copy keeps the f32 layout's offsets.
 */
import { kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { FlatBuffer, Layout, SLOT_ALIGN } from "../src/gpu/arena.ts";
import { castF16ToF32, castF32ToF16 } from "../src/ops/cast.ts";

/** Ragged slots (odd lengths) so slot ends and f16 word boundaries disagree. */
function layout(): Layout {
  const l = new Layout();
  for (const [n, s] of [["a", [37, 5]], ["b", [13]], ["c", [3, 3, 7]], ["d", [1]], ["e", [300]]]) {
    l.add(n as string, s as number[]);
  }
  return l;
}

/** Values spread over f16's range: normals at several scales, ties, subnormals, signed zeros. */
function values(rng: Rng, n: number): Float32Array {
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const kind = i % 5;
    v[i] = kind === 0
      ? rng.normal() * 1e-2
      : kind === 1
      ? rng.normal() * 300
      : kind === 2
      ? (1 + (2 * Math.floor(rng.uniform() * 512) + 1) / 2048) * (rng.uniform() < 0.5 ? -1 : 1) // ties
      : kind === 3
      ? rng.normal() * 2 ** -20 // f16 subnormals
      : rng.normal();
  }
  v[0] = -0;
  return v;
}

Deno.test("layout slots are 128-element aligned: 256-byte f16 views", () => {
  const l = layout();
  for (const s of l.slots) {
    if (s.offset % SLOT_ALIGN !== 0 || (s.offset * 2) % 256 !== 0) {
      throw new Error(`slot ${s.name} at ${s.offset} is not 256-byte aligned in f16`);
    }
    if (l.end(s) < s.offset + s.length || l.end(s) % SLOT_ALIGN !== 0) {
      throw new Error(`slot ${s.name}: end ${l.end(s)}`);
    }
  }
  if (l.total !== l.end("e")) throw new Error(`total ${l.total} != end of the last slot`);
});

Deno.test("cast f32 -> f16 -> f32 over whole flat buffers and per slot", async () => {
  const k = await kernels();
  const l = layout();
  const rng = new Rng(TEST_SEED ^ 0xca57);
  const f32 = new FlatBuffer(k.device, l, "f32 params");
  const f16 = new FlatBuffer(k.device, l, "f16 copy", "f16");
  const back = new FlatBuffer(k.device, l, "f32 again");
  const data = values(rng, l.total);
  k.write(f32.all(), data);
  await k.run([
    ...castF32ToF16(k, f32.all(), f16.all()),
    ...castF16ToF32(k, f16.all(), back.all()),
  ]);
  const want = new Float16Array(data);
  const got16 = await k.read(f16.all()), got32 = await k.read(back.all());
  for (let i = 0; i < data.length; i++) {
    if (!Object.is(got16[i], want[i]) || !Object.is(got32[i], want[i])) {
      throw new Error(
        `element ${i}: ${data[i]} -> f16 ${got16[i]}, back ${got32[i]}; nearest f16 ${want[i]}`,
      );
    }
  }
  // Per-slot views of the f16 copy (offsets in f16 bytes), odd lengths (scalar path).
  for (const s of l.slots) {
    const v = f16.view(s.name);
    if (v.dtype !== "f16" || v.offset !== s.offset * 2) throw new Error(`view ${s.name}`);
    const out = k.tensor(s.shape);
    await k.run(castF16ToF32(k, v, out));
    const got = await k.read(out);
    for (let i = 0; i < s.length; i++) {
      if (!Object.is(got[i], want[s.offset + i])) {
        throw new Error(`slot ${s.name}[${i}]: ${got[i]}, want ${want[s.offset + i]}`);
      }
    }
  }
  // A slot cast on its own (odd length) leaves its neighbours alone.
  const lone = k.tensor([37, 5], "lone", "f16");
  k.fill(lone, 7);
  await k.run(castF32ToF16(k, f32.view("a"), lone));
  const a = await k.read(lone);
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], want[i])) throw new Error(`slot a[${i}]: ${a[i]}, want ${want[i]}`);
  }
});

Deno.test("cast errors name the mismatch", async () => {
  const k = await kernels();
  const msg = (f: () => unknown) => {
    try {
      f();
    } catch (e) {
      return (e as Error).message;
    }
    return "";
  };
  const m1 = msg(() => castF32ToF16(k, k.tensor([8]), k.tensor([8])));
  if (!m1.includes("f16 destination")) throw new Error(`unclear: ${m1}`);
  const m2 = msg(() => castF16ToF32(k, k.tensor([8], "h", "f16"), k.tensor([9])));
  if (!m2.includes("8 elements")) throw new Error(`unclear: ${m2}`);
});
