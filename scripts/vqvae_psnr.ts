/**
 * Where a VQ-VAE loses its PSNR: the reconstructions of held-out and of training images, through
 * the codebook (what train-vqvae reports) and with the encoder's output decoded as it is. A large
 * held-out/training gap in both says the encoder and decoder memorised their images; a gap between
 * the two columns is the codebook's share.
 *
 *   deno run -A scripts/vqvae_psnr.ts runs/vq-emoji/vqvae.safetensors --dataset emoji
 *   deno run -A scripts/vqvae_psnr.ts runs/vq-fmnist --dataset fashion-mnist --images 1000
 *
 * --images N scores N images of each split (evenly spaced; default: all held-out images, as many
 * training images); --batch B images a pass (default 16, within a software adapter's limits).
 */
import { parseArgs } from "node:util";
import { loadVqvae } from "../mod.ts";
import type { Dataset } from "../src/data/dataset.ts";
import { psnrPerImage, type VQVAE } from "../src/vqvae/model.ts";
import { VQVAE_GPU_DEFAULTS } from "../src/vqvae/options.ts";
import { loadSplits } from "../tasks/train_vqvae_setup.ts";

/**
 * Mean per-image PSNR of n images of `ds` (evenly spaced; all when n ≥ its length) reconstructed
 * through the codebook and with the encoder's output decoded as it is.
 */
export async function vqvaePsnr(
  vq: VQVAE,
  ds: Dataset,
  n: number,
  batch = 16,
): Promise<{ images: number; quantized: number; raw: number }> {
  n = Math.min(n, ds.length);
  const per = ds.channels * ds.imageSize * ds.imageSize, x = new Float32Array(n * per);
  for (let i = 0; i < n; i++) x.set(ds.get(Math.floor(i * ds.length / n)).image, i * per);
  const z = await vq.encode(x, batch);
  const q = await vq.decode(z, { quantize: true, batch });
  const raw = await vq.decode(z, { quantize: false, batch });
  const mean = (a: Float64Array) => a.reduce((s, v) => s + v, 0) / a.length;
  return {
    images: n,
    quantized: mean(psnrPerImage(x, q, per)),
    raw: mean(psnrPerImage(x, raw, per)),
  };
}

async function main() {
  const { values: f, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      dataset: { type: "string", default: "fashion-mnist" },
      data: { type: "string" },
      "image-size": { type: "string" },
      images: { type: "string" },
      batch: { type: "string", default: "16" },
    },
  });
  if (positionals.length !== 1) {
    console.error(
      "error: usage: deno run -A scripts/vqvae_psnr.ts CHECKPOINT [--dataset D] [--images N]",
    );
    Deno.exit(2);
  }
  const vq = await loadVqvae(positionals[0]);
  const { train, heldOut, note } = await loadSplits({
    ...VQVAE_GPU_DEFAULTS,
    dataset: f.dataset as typeof VQVAE_GPU_DEFAULTS.dataset,
    data: f.data,
    image_size: f["image-size"] ? Number(f["image-size"]) : vq.cfg.image_size,
  });
  const n = f.images ? Number(f.images) : heldOut.length;
  console.log(`held out: ${note}`);
  for (const [what, ds] of [["held-out", heldOut], ["training", train]] as const) {
    const r = await vqvaePsnr(vq, ds, n, Number(f.batch));
    console.log(
      `${what}: ${r.images} images, through the codebook ${r.quantized.toFixed(2)} dB, ` +
        `encoder output decoded as it is ${r.raw.toFixed(2)} dB`,
    );
  }
}

if (import.meta.main) await main();
