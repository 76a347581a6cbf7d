/**
 * The float64 DiT reference: its backward against central finite differences on every parameter
 * (random non-zero weights everywhere), and the parameter specs, pos_embed and init against DiT.
 */
import { type DiTConfig, numTokens, PRESETS, resolveConfig } from "../src/model/config.ts";
import { initKind, initParams, paramLayout, paramSpecs, posEmbed } from "../src/model/params.ts";
import { ditBackwardRef, ditForwardRef, type Params } from "./reference/dit.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";

function assert(cond: unknown, msg = "assertion failed"): asserts cond {
  if (!cond) throw new Error(msg);
}
function assertEquals(got: unknown, want: unknown, msg = ""): void {
  const norm = (v: unknown) =>
    JSON.stringify(v, (_, x) => ArrayBuffer.isView(x) ? Array.from(x as Float32Array) : x);
  const g = norm(got), w = norm(want);
  if (g !== w) {
    throw new Error(`${msg} not equal:\n  got  ${g.slice(0, 300)}\n  want ${w.slice(0, 300)}`);
  }
}
function assertThrows(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error("expected an exception");
}

/** The odd config: ragged sizes everywhere (T = 36, dh = 16, P = 12, K = 5). */
export const ODD: DiTConfig = resolveConfig({
  image_size: 12,
  in_channels: 3,
  patch_size: 2,
  hidden_size: 48,
  depth: 3,
  num_heads: 3,
  num_classes: 5,
});

/** Random non-zero parameters everywhere (pos_embed: the fixed sin-cos table). */
export function randomParams(cfg: DiTConfig, rng: Rng): Params {
  const params: Params = new Map();
  for (const s of paramSpecs(cfg)) {
    const n = s.shape.reduce((a, b) => a * b, 1);
    if (s.name === "pos_embed") params.set(s.name, Float64Array.from(posEmbed(cfg)));
    else if (s.name.endsWith(".bias")) params.set(s.name, rng.normals(n, 0.2));
    else if (s.name.startsWith("y_embedder")) params.set(s.name, rng.normals(n, 0.5));
    else params.set(s.name, rng.normals(n, 1 / Math.sqrt(n / s.shape[0])));
  }
  return params;
}

function fdCheck(cfg: DiTConfig, B: number, picksPerParam: number) {
  const rng = new Rng(TEST_SEED ^ 0x5eed);
  const params = randomParams(cfg, rng);
  const C = cfg.in_channels, H = cfg.image_size;
  const x = rng.normals(B * C * H * H);
  const t = Float64Array.from({ length: B }, () => Math.fround(0.02 + 0.96 * rng.uniform()));
  const y = Int32Array.from({ length: B }, (_, b) => b === B - 1 ? cfg.num_classes : b % 5);
  const dOut = rng.normals(B * C * H * H);
  const { out, cache } = ditForwardRef(cfg, params, x, t, y);
  assertEquals(out.length, B * C * H * H);
  const grads = ditBackwardRef(cfg, params, cache, dOut);
  const trainable = paramSpecs(cfg).filter((s) => s.trainable).map((s) => s.name);
  assertEquals([...grads.keys()], trainable);
  const loss = () => {
    const o = ditForwardRef(cfg, params, x, t, y).out;
    let s = 0;
    for (let i = 0; i < o.length; i++) s += dOut[i] * o[i];
    return s;
  };
  let worst = 0;
  for (const name of trainable) {
    const w = params.get(name)!, g = grads.get(name)!;
    assertEquals(g.length, w.length, name);
    let gmax = 0;
    for (const v of g) gmax = Math.max(gmax, Math.abs(v));
    assert(gmax > 0, `${name}: gradient is all zero`);
    // The largest-gradient entry plus random ones.
    let imax = 0;
    for (let i = 0; i < g.length; i++) if (Math.abs(g[i]) > Math.abs(g[imax])) imax = i;
    const picks = [imax];
    for (let k = 1; k < picksPerParam; k++) picks.push(Math.floor(rng.uniform() * w.length));
    for (const i of picks) {
      const orig = w[i], h = 1e-5 * Math.max(1, Math.abs(orig));
      w[i] = orig + h;
      const lp = loss();
      w[i] = orig - h;
      const lm = loss();
      w[i] = orig;
      const num = (lp - lm) / (2 * h);
      const err = Math.abs(num - g[i]);
      worst = Math.max(worst, err / gmax);
      if (!(err <= 1e-6 * gmax + 1e-8)) {
        throw new Error(
          `${name}[${i}]: backward ${g[i]}, finite difference ${num} (max|grad| ${gmax}, ` +
            `seed ${TEST_SEED})`,
        );
      }
    }
  }
  console.log(`  worst |fd - grad| / max|grad| = ${worst.toExponential(2)} (seed ${TEST_SEED})`);
}

Deno.test("ditBackwardRef matches finite differences on every parameter (odd config)", () => {
  fdCheck(ODD, 2, 3);
});

Deno.test("ditBackwardRef matches finite differences, unconditional (num_classes 0)", () => {
  const cfg = resolveConfig({
    image_size: 8,
    in_channels: 2,
    patch_size: 4,
    hidden_size: 12,
    depth: 2,
    num_heads: 2,
    num_classes: 0,
    t_scale: 1,
  });
  assert(!paramSpecs(cfg).some((s) => s.name.startsWith("y_embedder")));
  fdCheck(cfg, 3, 2);
});

Deno.test("reference: a zero-initialised DiT outputs exactly zero (adaLN-Zero)", () => {
  const layout = paramLayout(ODD);
  const flat = initParams(ODD, 7);
  const params: Params = new Map();
  for (const s of layout.slots) {
    params.set(s.name, Float64Array.from(flat.subarray(s.offset, s.offset + s.length)));
  }
  const rng = new Rng(TEST_SEED);
  const x = rng.normals(2 * 3 * 12 * 12);
  const { out } = ditForwardRef(ODD, params, x, Float64Array.of(0.3, 0.9), Int32Array.of(1, 5));
  assert(out.every((v) => v === 0));
});

/** DiT's get_2d_sincos_pos_embed written out literally (numpy meshgrid semantics). */
function ditPosEmbedLiteral(D: number, gs: number): number[][] {
  // grid = np.meshgrid(grid_w, grid_h): grid[0][i][j] = grid_w[j], grid[1][i][j] = grid_h[i]
  const grid0: number[] = [], grid1: number[] = [];
  for (let i = 0; i < gs; i++) {
    for (let j = 0; j < gs; j++) {
      grid0.push(j);
      grid1.push(i);
    }
  }
  const oneD = (dim: number, pos: number[]) => {
    const omega = Array.from({ length: dim / 2 }, (_, i) => 1 / 10000 ** (i / (dim / 2)));
    return pos.map((
      p,
    ) => [...omega.map((w) => Math.sin(p * w)), ...omega.map((w) => Math.cos(p * w))]);
  };
  const embH = oneD(D / 2, grid0), embW = oneD(D / 2, grid1);
  return embH.map((r, m) => [...r, ...embW[m]]);
}

Deno.test("pos_embed equals DiT's get_2d_sincos_pos_embed", () => {
  for (const [D, gs] of [[8, 2], [48, 6], [64, 8], [384, 16]]) {
    const cfg = resolveConfig({
      image_size: gs * 2,
      in_channels: 3,
      hidden_size: D,
      depth: 1,
      num_heads: 1,
      num_classes: 0,
    });
    const got = posEmbed(cfg);
    const want = ditPosEmbedLiteral(D, gs);
    assertEquals(got.length, gs * gs * D);
    for (let m = 0; m < gs * gs; m++) {
      for (let d = 0; d < D; d++) {
        assert(Math.abs(got[m * D + d] - want[m][d]) <= 1e-7, `D ${D} token ${m} channel ${d}`);
      }
    }
  }
  // Spot values, D = 8, 2x2 grid: token 1 = (row 0, col 1); ω = [1, 0.01].
  const cfg = resolveConfig({
    image_size: 4,
    in_channels: 1,
    hidden_size: 8,
    depth: 1,
    num_heads: 1,
    num_classes: 0,
  });
  const pe = posEmbed(cfg);
  const tok1 = [...pe.subarray(8, 16)];
  const want1 = [Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01), 0, 0, 1, 1];
  tok1.forEach((v, i) => assert(Math.abs(v - want1[i]) < 1e-7, `token 1 channel ${i}`));
  const tok2 = [...pe.subarray(16, 24)]; // row 1, col 0
  const want2 = [0, 0, 1, 1, Math.sin(1), Math.sin(0.01), Math.cos(1), Math.cos(0.01)];
  tok2.forEach((v, i) => assert(Math.abs(v - want2[i]) < 1e-7, `token 2 channel ${i}`));
});

Deno.test("paramSpecs: DiT state_dict names, shapes and order", () => {
  const specs = paramSpecs(ODD);
  const names = specs.map((s) => s.name);
  assertEquals(names.slice(0, 8), [
    "pos_embed",
    "x_embedder.proj.weight",
    "x_embedder.proj.bias",
    "t_embedder.mlp.0.weight",
    "t_embedder.mlp.0.bias",
    "t_embedder.mlp.2.weight",
    "t_embedder.mlp.2.bias",
    "y_embedder.embedding_table.weight",
  ]);
  assertEquals(names.slice(8, 18), [
    "blocks.0.attn.qkv.weight",
    "blocks.0.attn.qkv.bias",
    "blocks.0.attn.proj.weight",
    "blocks.0.attn.proj.bias",
    "blocks.0.mlp.fc1.weight",
    "blocks.0.mlp.fc1.bias",
    "blocks.0.mlp.fc2.weight",
    "blocks.0.mlp.fc2.bias",
    "blocks.0.adaLN_modulation.1.weight",
    "blocks.0.adaLN_modulation.1.bias",
  ]);
  assertEquals(names.slice(-4), [
    "final_layer.linear.weight",
    "final_layer.linear.bias",
    "final_layer.adaLN_modulation.1.weight",
    "final_layer.adaLN_modulation.1.bias",
  ]);
  assertEquals(specs.length, 8 + 10 * ODD.depth + 4);
  const shape = (n: string) => specs.find((s) => s.name === n)!.shape;
  assertEquals(shape("pos_embed"), [1, 36, 48]);
  assertEquals(shape("x_embedder.proj.weight"), [48, 3, 2, 2]);
  assertEquals(shape("t_embedder.mlp.0.weight"), [48, 256]);
  assertEquals(shape("y_embedder.embedding_table.weight"), [6, 48]);
  assertEquals(shape("blocks.2.attn.qkv.weight"), [144, 48]);
  assertEquals(shape("blocks.2.mlp.fc1.weight"), [192, 48]);
  assertEquals(shape("blocks.2.mlp.fc2.weight"), [48, 192]);
  assertEquals(shape("blocks.2.adaLN_modulation.1.weight"), [288, 48]);
  assertEquals(shape("final_layer.linear.weight"), [12, 48]);
  assertEquals(shape("final_layer.adaLN_modulation.1.weight"), [96, 48]);
  assertEquals(specs.filter((s) => !s.trainable).map((s) => s.name), ["pos_embed"]);
  const layout = paramLayout(ODD);
  for (const s of layout.slots) assertEquals(s.offset % 64, 0);
  assertEquals(layout.slots.map((s) => s.name), names);
});

Deno.test("initParams follows DiT initialize_weights", () => {
  const cfg = resolveConfig({ preset: "small", image_size: 32, in_channels: 3, num_classes: 10 });
  const layout = paramLayout(cfg);
  const flat = initParams(cfg, 1234);
  assertEquals(flat.length, layout.total);
  // padding stays zero
  const covered = new Uint8Array(layout.total);
  for (const s of layout.slots) covered.fill(1, s.offset, s.offset + s.length);
  for (let i = 0; i < flat.length; i++) if (!covered[i]) assertEquals(flat[i], 0);
  const pe = posEmbed(cfg);
  for (const s of layout.slots) {
    const v = flat.subarray(s.offset, s.offset + s.length);
    const n = v.length;
    let mean = 0, sq = 0, mx = 0;
    for (const a of v) {
      mean += a;
      sq += a * a;
      mx = Math.max(mx, Math.abs(a));
    }
    mean /= n;
    const std = Math.sqrt(sq / n - mean * mean);
    const init = initKind(cfg, s.name, s.shape);
    const zeroByDiT = s.name.includes("adaLN_modulation.1.") ||
      s.name.startsWith("final_layer.linear.") || s.name.endsWith(".bias");
    if (zeroByDiT) {
      assertEquals(init.kind, "zeros", s.name);
      assert(v.every((a) => a === 0), `${s.name} should be zero`);
    } else if (s.name === "pos_embed") {
      assert(v.every((a, i) => a === pe[i]), "pos_embed");
    } else if (
      s.name === "y_embedder.embedding_table.weight" || s.name.startsWith("t_embedder.mlp.")
    ) {
      assertEquals(init.kind, "normal", s.name);
      assert(Math.abs(std - 0.02) < 0.02 * 0.08, `${s.name}: std ${std}, want 0.02`);
      assert(Math.abs(mean) < 0.02 * 4 / Math.sqrt(n), `${s.name}: mean ${mean}`);
    } else {
      assertEquals(init.kind, "xavier", s.name);
      const fanOut = s.shape[0], fanIn = n / fanOut;
      const a = Math.sqrt(6 / (fanIn + fanOut));
      assert(mx <= a * (1 + 1e-6), `${s.name}: max ${mx} beyond xavier bound ${a}`);
      assert(mx > a * 0.98, `${s.name}: max ${mx} far inside xavier bound ${a}`);
      const want = a / Math.sqrt(3);
      assert(Math.abs(std - want) < want * 0.05, `${s.name}: std ${std}, want ${want}`);
    }
  }
  // x_embedder viewed as [D, C·p·p]
  assertEquals(initKind(cfg, "x_embedder.proj.weight", [256, 3, 2, 2]), {
    kind: "xavier",
    fanIn: 12,
    fanOut: 256,
  });
  // deterministic in the seed
  const again = initParams(cfg, 1234);
  assert(again.length === flat.length && again.every((v, i) => v === flat[i]), "not deterministic");
  const other = initParams(cfg, 1235);
  const s = layout.get("blocks.0.attn.qkv.weight");
  assert(other[s.offset] !== flat[s.offset]);
});

Deno.test("resolveConfig: presets, defaults and one-line errors", () => {
  const c = resolveConfig({ preset: "tiny", image_size: 32, in_channels: 3, num_classes: 10 });
  assertEquals(c, {
    image_size: 32,
    in_channels: 3,
    patch_size: 4,
    hidden_size: 64,
    depth: 2,
    num_heads: 2,
    num_classes: 10,
    t_scale: 1000,
    mlp_ratio: 4,
  });
  assertEquals(numTokens(c), 64);
  assertEquals(PRESETS.B.hidden_size, 768);
  const L = resolveConfig({ preset: "L", image_size: 32, in_channels: 4, num_classes: 0 });
  assertEquals([L.hidden_size, L.depth, L.num_heads, L.patch_size], [1024, 24, 16, 2]);
  const base = { image_size: 32, in_channels: 3, num_classes: 10 };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ ...base, preset: "tiny", patch_size: 5 }, /patch_size 5 must divide image_size 32/],
    [{ ...base, hidden_size: 60, depth: 1, num_heads: 8 }, /divisible by num_heads/],
    [{ ...base, hidden_size: 6, depth: 1, num_heads: 3 }, /divisible by 4/],
    [{ ...base, preset: "XL" }, /unknown preset/],
    [{ ...base, preset: "S", hiden_size: 3 }, /unknown key "hiden_size"/],
    [{ image_size: 32, in_channels: 3, preset: "S" }, /missing num_classes/],
    [{ ...base, depth: 2, num_heads: 2 }, /missing hidden_size \(or name a preset\)/],
    [{ ...base, preset: "S", depth: 0 }, /depth must be an integer >= 1/],
    [{ ...base, preset: "S", num_classes: -1 }, /num_classes must be an integer >= 0/],
    [{ ...base, preset: "S", t_scale: 0 }, /t_scale/],
    [{ ...base, preset: "S", mlp_ratio: 2 }, /mlp_ratio/],
    [{ ...base, preset: "S", image_size: 32.5 }, /image_size must be an integer/],
  ];
  for (const [p, re] of bad) {
    const e = assertThrows(() => resolveConfig(p as never)) as Error;
    assert(re.test(e.message), `${JSON.stringify(p)}: ${e.message}`);
    assert(!e.message.includes("\n"));
  }
});
