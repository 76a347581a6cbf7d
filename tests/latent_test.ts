/**
 * Latent flow matching's library parts: the VQ-VAE's encode (z_e, NCHW) and decode (snapped to
 * the codebook or not) against the float64 reference, the latent decoder's un-scaling, the
 * dataset encoding, the unit-variance scale, flow checkpoints that carry a VQ-VAE (round trip,
 * one-line errors for corrupt or mismatched ones), and generateImages decoding through
 * `Model.decoder`.
 */
import * as ref from "./reference/vqvae.ts";
import * as qref from "./reference/quantize.ts";
import * as cref from "./reference/conv.ts";
import { assertClose, kernels, testF16 } from "./harness.ts";
import { randomWeights as randomDit } from "./random_weights.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import {
  ArrayDataset,
  decodeCheckpoint,
  encodeCheckpoint,
  encodeDataset,
  encodeSafetensors,
  encodeVqvaeCheckpoint,
  generateImages,
  initParams,
  initVqvaeState,
  LatentDataset,
  latentScale,
  type LatentSpace,
  loadModel,
  loadVqvae,
  paramLayout,
  resolveConfig,
  resolveVqvaeConfig,
  VQVAE,
  VqvaeLatentDecoder,
  type VqvaeWeights,
} from "../mod.ts";
import { decodeSafetensors } from "../src/io/safetensors.ts";
import { loadModelState } from "../src/io/checkpoint.ts";
import { paramLayout as vqParamLayout, stateLayout as vqStateLayout } from "../src/vqvae/params.ts";

function assert(cond: unknown, msg: string): asserts cond {
  if (!cond) throw new Error(msg);
}

function assertThrows(fn: () => unknown, pattern: RegExp, what: string): void {
  let msg: string | undefined;
  try {
    fn();
  } catch (e) {
    msg = (e as Error).message;
  }
  assert(msg !== undefined, `${what}: did not throw`);
  assert(pattern.test(msg) && !msg.includes("\n"), `${what}: "${msg}" does not match ${pattern}`);
}

// RGB 8×8 → 3×2² latents; ragged counts (3 images with batch 2: the last batch padded).
const VQ = resolveVqvaeConfig({
  image_size: 8,
  in_channels: 3,
  channels: 6,
  res_blocks: 1,
  groups: 2,
  codebook_size: 11,
  code_dim: 3,
});
const N = 3, H = 8, C = 3, D = 3, h = 2;

/** Random weights (float64 map and flat float32) and a codebook at the scale of z_e. */
function randomVqvae(seed: number) {
  const rng = new Rng(TEST_SEED ^ seed);
  const w = ref.randomWeights(VQ, rng);
  const x = rng.normals(N * C * H * H, 0.5);
  const ze = ref.encoderGrads(VQ, w, x, N, new Float64Array(N * h * h * D)).y;
  let s = 0;
  for (const v of ze) s += v * v;
  const E = rng.normals(VQ.codebook_size * D, Math.sqrt(s / ze.length));
  const pl = vqParamLayout(VQ), sl = vqStateLayout(VQ);
  const params = new Float32Array(pl.total), state = initVqvaeState(VQ, 0);
  for (const [name, v] of w) params.set(Float32Array.from(v), pl.get(name).offset);
  state.set(Float32Array.from(E), sl.get("quantizer.embedding.weight").offset);
  const weights: VqvaeWeights = { cfg: VQ, params, state };
  return { rng, w, x, ze, E, weights };
}

Deno.test("VQVAE.encode and decode (snapped and as is) against float64", async () => {
  const k = await kernels();
  const { rng, w, x, ze, E, weights } = randomVqvae(0x1a7);
  const vq = new VQVAE(k, VQ, weights.params, weights.state);
  // encode: z_e in NCHW
  const z = await vq.encode(Float32Array.from(x), 2);
  const e1 = assertClose("encode z_e", z, cref.toNchw(ze, N, h, h, D));
  // decode as is: the decoder on z (NHWC inside)
  const zr = rng.normals(N * D * h * h, 1);
  const raw = await vq.decode(Float32Array.from(zr), { quantize: false, batch: 2 });
  const dRaw =
    ref.decoderGrads(VQ, w, cref.toNhwc(zr, N, D, h, h), N, new Float64Array(N * H * H * C)).y;
  const e2 = assertClose("decode as is", raw, cref.toNchw(dRaw, N, H, H, C));
  // decode snapped: nearest codes of each latent cell, then the decoder
  const cells = cref.toNhwc(zr, N, D, h, h);
  const idx = qref.nearest(cells, E, N * h * h, D, VQ.codebook_size);
  const zq = qref.gather(E, idx, D);
  const dq = ref.decoderGrads(VQ, w, zq, N, new Float64Array(N * H * H * C)).y;
  const snapped = await vq.decode(Float32Array.from(zr), { batch: 2 });
  const e3 = assertClose("decode snapped", snapped, cref.toNchw(dq, N, H, H, C));
  // snapping changes something (random latents are not codes)
  let diff = 0;
  for (let i = 0; i < raw.length; i++) diff = Math.max(diff, Math.abs(raw[i] - snapped[i]));
  assert(diff > 1e-3, `snapped and raw decodes agree (${diff})`);
  // reconstruct = decode(encode(x)) snapped, exactly (the same kernels)
  const rec = await vq.reconstruct(Float32Array.from(x), 2);
  const rec2 = await vq.decode(z, { batch: 2 });
  assert(rec.every((v, i) => v === rec2[i]), "reconstruct differs from decode(encode(x))");
  console.log(
    `  encode ${e1.toExponential(1)}, decode as is ${e2.toExponential(1)}, snapped ` +
      `${e3.toExponential(1)}`,
  );
  vq.dispose();
});

Deno.test("encodeDataset, the scale, LatentDataset, and the decoder's un-scaling", async () => {
  const k = await kernels();
  const { rng, weights } = randomVqvae(0x2b8);
  const vq = new VQVAE(k, VQ, weights.params, weights.state);
  const n = 5, per = C * H * H;
  const pixels = Uint8Array.from({ length: n * per }, () => Math.floor(rng.uniform() * 256));
  const labels = Int32Array.from([2, 0, 1, 2, 1]);
  const ds = new ArrayDataset(pixels, labels, C, H, 3, ["a", "b", "c"]);
  const seen: number[] = [];
  const enc = await encodeDataset(vq, ds, { batch: 2, onProgress: (d) => seen.push(d) });
  assert(seen.join() === "2,4,5", `progress ${seen}`);
  assert(enc.labels.join() === labels.join(), "labels");
  const x = new Float32Array(n * per);
  for (let i = 0; i < n; i++) x.set(ds.get(i).image, i * per);
  const direct = await vq.encode(x, 4);
  assert(enc.latents.every((v, i) => v === direct[i]), "encodeDataset differs from encode");
  // the scale: 1/std in float64
  const m = enc.latents.reduce((a, v) => a + v, 0) / enc.latents.length;
  const sd = Math.sqrt(enc.latents.reduce((a, v) => a + (v - m) ** 2, 0) / enc.latents.length);
  const scale = latentScale(enc.latents);
  assert(Math.abs(scale * sd - 1) < 1e-12, `scale ${scale}, std ${sd}`);
  assertThrows(() => latentScale(new Float32Array(8).fill(0.5)), /standard deviation 0/, "flat");
  const lds = new LatentDataset(
    enc.latents.map((v) => v * scale),
    enc.labels,
    D,
    h,
    3,
    ["a", "b", "c"],
  );
  assert(lds.length === n && lds.get(3).label === 2 && lds.get(3).image.length === D * h * h, "ds");
  let s2 = 0;
  for (let i = 0; i < n; i++) for (const v of lds.get(i).image) s2 += (v - m * scale) ** 2;
  assert(Math.abs(s2 / (n * D * h * h) - 1) < 1e-5, `variance ${s2 / (n * D * h * h)}`);
  assertThrows(() => new LatentDataset(new Float32Array(7), [0], D, h, 0), /whole latents/, "len");
  // the decoder divides by the scale before decoding
  const dec = new VqvaeLatentDecoder(k, { vqvae: weights, scale: 2.5 }, { batch: 2 });
  const zs = Float32Array.from(rng.normals(n * D * h * h));
  const out = await dec.decode(zs.map((v) => v * 2.5), [n, D, h, h]);
  assert(out.shape.join() === [n, C, H, H].join(), `shape ${out.shape}`);
  assertClose("decoder un-scales", out.images, await vq.decode(zs, { batch: 2 }), 1e-5);
  let threw = "";
  await dec.decode(zs, [n, D + 1, h, h]).catch((e) => threw = e.message);
  assert(/latents \[5,4,2,2\], the VQ-VAE decodes \[N, 3, 2, 2\]/.test(threw), threw);
  dec.dispose();
  vq.dispose();
});

/** A latent flow model of the VQ-VAE: in_channels = code_dim, image_size = the latent grid. */
const DIT = resolveConfig({
  preset: "tiny",
  image_size: h,
  in_channels: D,
  num_classes: 3,
  patch_size: 1,
});

Deno.test("flow checkpoints carry the VQ-VAE and the class names; bad ones are one-line errors", () => {
  const { weights } = randomVqvae(0x3c9);
  const latent: LatentSpace = { vqvae: weights, scale: 0.75 };
  const params = initParams(DIT, 1), ema = initParams(DIT, 2);
  const classNames = ["cats", "dogs", "emoji ✨"];
  const bytes = encodeCheckpoint({ cfg: DIT, params, ema, latent, classNames });
  const c = decodeCheckpoint(bytes);
  assert(c.latent?.scale === 0.75 && c.classNames?.join() === classNames.join(), "metadata");
  assert(JSON.stringify(c.latent.vqvae.cfg) === JSON.stringify(VQ), "VQ-VAE config");
  for (const key of ["params", "state"] as const) {
    assert(c.latent.vqvae[key].every((v, i) => v === weights[key][i]), `VQ-VAE ${key}`);
  }
  assert(c.params.every((v, i) => v === params[i]) && c.ema!.every((v, i) => v === ema[i]), "dit");
  // the DiT loader skips vqvae.* (a non-model prefix), as PyTorch's strict check does
  const { tensors, metadata } = decodeSafetensors(bytes);
  assert([...tensors.keys()].some((n) => n.startsWith("vqvae.encoder.")), "vqvae.* tensors");
  assert(loadModelState(DIT, tensors).length === paramLayout(DIT).total, "loadModelState");
  // corrupt and mismatched
  const redo = (edit: (t: typeof tensors, m: Record<string, string>) => void) => {
    const t = new Map(tensors), m = { ...metadata! };
    edit(t, m);
    const list = [...t].map(([name, v]) => ({ name, shape: v.shape, data: v.data }));
    return () => decodeCheckpoint(encodeSafetensors(list, m));
  };
  assertThrows(
    redo((t) => t.delete("vqvae.decoder.conv_in.weight")),
    /checkpoint: its VQ-VAE \(latent space\): missing tensor vqvae\.decoder\.conv_in\.weight/,
    "missing",
  );
  assertThrows(
    redo((t) =>
      t.set("vqvae.quantizer.embedding.weight", {
        dtype: "F32",
        shape: [11, 2],
        data: new Float32Array(22),
      })
    ),
    /vqvae\.quantizer\.embedding\.weight has shape \[11,2\], the config needs \[11,3\]/,
    "shape",
  );
  assertThrows(
    redo((_, m) => m["flowgpu.latent"] = m["flowgpu.latent"].replace('"scale":0.75', '"scale":-1')),
    /scale -1 is not a positive number/,
    "scale",
  );
  assertThrows(
    redo((_, m) => delete m["flowgpu.latent"]),
    /vqvae\.\* tensors but no flowgpu\.latent metadata/,
    "no metadata",
  );
  assertThrows(
    redo((_, m) => m["flowgpu.classes"] = '{"a": 1}'),
    /flowgpu\.classes is not a list of names/,
    "classes",
  );
  // a VQ-VAE whose latents are not the model's input
  const other = resolveConfig({ ...DIT, in_channels: 2 });
  assertThrows(
    () =>
      decodeCheckpoint(
        encodeCheckpoint({ cfg: other, params: initParams(other, 0), latent }),
      ),
    /its VQ-VAE \(latent space\): it makes 3×2² latents, the model is 2×2²/,
    "mismatch",
  );
});

Deno.test("loadModel of a latent checkpoint: generateImages decodes through Model.decoder", async () => {
  const k = await kernels();
  const { weights } = randomVqvae(0x4da);
  const latent: LatentSpace = { vqvae: weights, scale: 1.3 };
  const bytes = encodeCheckpoint({ cfg: DIT, params: initParams(DIT, 3), latent });
  const model = await loadModel(bytes, { kernels: k });
  assert(model.decoder instanceof VqvaeLatentDecoder && model.decoder.quantize, "decoder");
  const opts = { labels: [0, 2, 3], steps: 2, cfgScale: 2, seed: 7 };
  const px = await generateImages(model, opts);
  assert(px.shape.join() === [3, C, H, H].join() && px.images.length === 3 * C * H * H, "pixels");
  const z = await generateImages(model, { ...opts, decode: false });
  assert(z.shape.join() === [3, D, h, h].join() && z.nfe === px.nfe, "latents");
  const again = await model.decoder.decode(z.images, z.shape);
  assert(again.images.every((v, i) => v === px.images[i]), "decode of the latents differs");
  const raw = await loadModel(bytes, { kernels: k, decode: { quantize: false } });
  assert(raw.decoder instanceof VqvaeLatentDecoder && !raw.decoder.quantize, "--no-quantize");
  const rawPx = await generateImages(raw, opts);
  const direct = await raw.decoder.decode(z.images, z.shape);
  assert(rawPx.images.every((v, i) => v === direct.images[i]), "raw decode");
  assert(rawPx.images.some((v, i) => Math.abs(v - px.images[i]) > 1e-4), "raw = snapped");
  // loadVqvae: the VQ-VAE of a latent flow checkpoint, or of a train-vqvae checkpoint
  const zs = Float32Array.from(new Rng(TEST_SEED ^ 0x5eb).normals(2 * D * h * h));
  const want = await model.decoder.vqvae.decode(zs);
  for (const src of [bytes, encodeVqvaeCheckpoint(weights)]) {
    const vq = await loadVqvae(src, { kernels: k });
    const got = await vq.decode(zs);
    assert(got.every((v, i) => v === want[i]), "loadVqvae decodes differently");
    vq.dispose();
  }
  let err = "";
  await loadVqvae(encodeCheckpoint({ cfg: DIT, params: initParams(DIT, 3) }), { kernels: k })
    .catch((e) => err = e.message);
  assert(/neither a VQ-VAE checkpoint nor a latent flow model/.test(err), err);
});

await testF16(
  "f16 latent model: the DiT in mixed precision, decoded by its f32 VQ-VAE",
  async () => {
    const k = await kernels();
    const { weights } = randomVqvae(0x4db);
    const latent: LatentSpace = { vqvae: weights, scale: 0.8 };
    // Random DiT weights: DiT's zero init makes the velocity 0 in either precision.
    const params = randomDit(DIT, new Rng(TEST_SEED ^ 0x4dc)).flat;
    const bytes = encodeCheckpoint({ cfg: DIT, params, latent });
    const m32 = await loadModel(bytes, { kernels: k, precision: "f32" });
    const m16 = await loadModel(bytes, { kernels: k, precision: "f16" });
    assert(m16.precision === "f16" && m16.decoder instanceof VqvaeLatentDecoder, "f16 model");
    const opts = { labels: [1, 0, 3], steps: 3, cfgScale: 1.5, seed: 11, decode: false };
    const z32 = await generateImages(m32, opts), z16 = await generateImages(m16, opts);
    assert(z16.shape.join() === [3, D, h, h].join(), "f16 latents' shape");
    // f16 weights and activations: close to the f32 sample, but not the f32 computation.
    const err = assertClose("f16 latents vs f32", z16.images, z32.images, 2e-3);
    console.log(`  f16 latents vs f32: worst error ${err.toExponential(2)}`);
    assert(z16.images.some((v, i) => v !== z32.images[i]), "f16 latents are the f32 ones");
    const px = await generateImages(m16, { ...opts, decode: true });
    const want = await m16.decoder.decode(z16.images, z16.shape);
    assert(px.shape.join() === [3, C, H, H].join(), "f16 pixels' shape");
    assert(
      px.images.every((v, i) => v === want.images[i]),
      "f16 decode differs from the decoder's",
    );
  },
);
