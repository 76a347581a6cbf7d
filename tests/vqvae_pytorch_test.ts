/**
 * A flowgpu VQ-VAE checkpoint loads into scripts/pytorch_vqvae.py's module with strict=True (the
 * parameter names, shapes and buffers agree) and PyTorch reconstructs the same images with the
 * same codes as the GPU; a latent flow checkpoint loads into scripts/pytorch_dit.py's DiT and its
 * VQ-VAE into the VQ-VAE module, both strictly, and decodes. Runs where a Python with PyTorch is
 * found (FLOWGPU_PYTHON, python3, or /usr/bin/python3 — Debian's python3-torch); skipped otherwise.
 */
import { join } from "node:path";
import { assertClose, kernels } from "./harness.ts";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { resolveVqvaeConfig } from "../src/vqvae/config.ts";
import { initParams, initState, stateLayout } from "../src/vqvae/params.ts";
import { encodeVqvaeCheckpoint } from "../src/vqvae/checkpoint.ts";
import { VQVAE } from "../src/vqvae/model.ts";
import { encodeCheckpoint, initParams as initDiTParams, resolveConfig } from "../mod.ts";

function findPython(): string | undefined {
  const candidates = [Deno.env.get("FLOWGPU_PYTHON"), "python3", "/usr/bin/python3"];
  for (const p of candidates) {
    if (!p) continue;
    try {
      const r = new Deno.Command(p, {
        args: ["-c", "import torch"],
        stdout: "null",
        stderr: "null",
      })
        .outputSync();
      if (r.success) return p;
    } catch { /* not installed */ }
  }
  return undefined;
}

const python = findPython();

Deno.test({
  name: "vqvae checkpoint loads into PyTorch (strict) and reconstructs the same images",
  ignore: python === undefined,
  fn: async () => {
    const k = await kernels();
    const rng = new Rng(TEST_SEED ^ 0x9a7);
    const cfg = resolveVqvaeConfig({
      image_size: 12,
      in_channels: 3,
      channels: 8,
      res_blocks: 2,
      groups: 4,
      codebook_size: 37,
      code_dim: 3,
    });
    const params = initParams(cfg, TEST_SEED);
    const state = initState(cfg, TEST_SEED);
    // Codes at the scale of the encoder's output, so the decoder sees varied inputs.
    const e = stateLayout(cfg).get("quantizer.embedding.weight");
    state.set(Float32Array.from(rng.normals(e.length, 0.3)), e.offset);
    const dir = await Deno.makeTempDir({ prefix: "flowgpu_vqvae_torch_" });
    const ckpt = join(dir, "vqvae.safetensors");
    await Deno.writeFile(ckpt, encodeVqvaeCheckpoint({ cfg, params, state }));
    const n = 3, per = 3 * 12 * 12;
    const x = Float32Array.from(rng.normals(n * per, 0.6));
    await Deno.writeFile(join(dir, "x.f32"), new Uint8Array(x.buffer));
    const out = await new Deno.Command(python!, {
      args: [
        new URL("../scripts/pytorch_vqvae.py", import.meta.url).pathname,
        "--parity",
        ckpt,
        "--input",
        join(dir, "x.f32"),
        "--count",
        String(n),
        "--output",
        join(dir, "recon.f32"),
        "--codes-output",
        join(dir, "codes.i32"),
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr));
    const torchRecon = new Float32Array((await Deno.readFile(join(dir, "recon.f32"))).buffer);
    const torchCodes = new Int32Array((await Deno.readFile(join(dir, "codes.i32"))).buffer);

    const model = new VQVAE(k, cfg, params, state);
    const recon = await model.reconstruct(x, n);
    const codes = await k.readU32(model.graph(n).quantizer.idx);
    const same = codes.every((c, i) => c === torchCodes[i]);
    if (!same) throw new Error(`codes differ: GPU ${codes}, PyTorch ${torchCodes}`);
    const err = assertClose("PyTorch reconstruction", recon, torchRecon);
    console.log(
      `  ${codes.length} codes equal; reconstruction relative error ${err.toExponential(2)}`,
    );
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "a latent flow checkpoint loads into PyTorch DiT and its VQ-VAE (both strict)",
  ignore: python === undefined,
  fn: async () => {
    const vq = resolveVqvaeConfig({
      image_size: 16,
      in_channels: 3,
      channels: 8,
      res_blocks: 1,
      groups: 4,
      codebook_size: 9,
      code_dim: 2,
    });
    const dit = resolveConfig({
      preset: "tiny",
      image_size: 4,
      in_channels: 2,
      num_classes: 3,
      patch_size: 1,
    });
    const latent = {
      vqvae: { cfg: vq, params: initParams(vq, 1), state: initState(vq, 1) },
      scale: 1.7,
    };
    const dir = await Deno.makeTempDir({ prefix: "flowgpu_latent_torch_" });
    const ckpt = join(dir, "latent.safetensors");
    const params = initDiTParams(dit, 2);
    await Deno.writeFile(ckpt, encodeCheckpoint({ cfg: dit, params, ema: params, latent }));
    const out = await new Deno.Command(python!, {
      args: [new URL("../scripts/pytorch_dit.py", import.meta.url).pathname, "check", ckpt],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    if (!out.success) throw new Error(new TextDecoder().decode(out.stderr) + text);
    if (!/loaded the latent VQ-VAE .*\(strict\)/.test(text)) throw new Error(text);
    if (!/decoded \[2, 2, 4, 4\] latents to images \[2, 3, 16, 16\]/.test(text)) {
      throw new Error(text);
    }
    await Deno.remove(dir, { recursive: true });
  },
});
