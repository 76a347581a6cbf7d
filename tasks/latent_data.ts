/**
 * `deno task train --vqvae CKPT` (latent flow matching): the VQ-VAE read and checked before the
 * GPU starts, then the dataset encoded once into the encoder's continuous output z_e and cached in
 * the run directory (`latents.safetensors`, reused by a resumed run while it matches the VQ-VAE
 * and the dataset), scaled to unit variance (the scale goes into the flow checkpoint with the
 * VQ-VAE, so that one file generates).
 */
import { join } from "node:path";
import {
  crc32,
  type Dataset,
  decodeSafetensors,
  decodeVqvaeCheckpoint,
  encodeDataset,
  encodeSafetensors,
  type Kernels,
  LatentDataset,
  latentScale,
  type LatentSpace,
  NotVqvaeCheckpoint,
  scaleLatents,
  type TrainingCheckpoint,
  VQVAE,
  type VqvaeWeights,
} from "../mod.ts";
import { UsageError, warn } from "./cli.ts";
import { writeFileAtomic } from "./files.ts";
import { readBytes, type ResumePoint } from "./resume.ts";

/** Where a latent run's VQ-VAE comes from: a --vqvae file, or the resumed flow checkpoint. */
export interface LatentSource {
  vqvae: VqvaeWeights;
  /** The resumed run's scale (a new run computes it from its latents). */
  scale?: number;
  from: string;
}

const CACHE = "latents.safetensors";
const CACHE_KEY = "flowgpu.latent_cache";

/**
 * A VQ-VAE checkpoint (or a train-vqvae run directory: its final checkpoint) for --vqvae,
 * checked without a GPU; every problem a one-line UsageError.
 */
async function readVqvae(path: string): Promise<VqvaeWeights> {
  const st = await Deno.stat(path).catch(() => undefined);
  const file = st?.isDirectory ? join(path, "checkpoints", "final.safetensors") : path;
  if (st?.isDirectory && !(await Deno.stat(file).catch(() => undefined))) {
    throw new UsageError(
      `--vqvae ${path}: no checkpoints/final.safetensors in that run directory (an unfinished ` +
        "run: pass one of its checkpoints/step_*.safetensors)",
    );
  }
  try {
    const { cfg, params, state } = decodeVqvaeCheckpoint(await readBytes(file));
    return { cfg, params, state };
  } catch (e) {
    const hint = e instanceof NotVqvaeCheckpoint ? " (give a train-vqvae checkpoint)" : "";
    throw new UsageError(`--vqvae ${path}: ${(e as Error).message}${hint}`);
  }
}

/**
 * The VQ-VAE of a latent run, before any GPU work: the resumed checkpoint's own, or the --vqvae
 * file's; undefined for a pixel-space run.
 */
export async function latentSource(
  given: { vqvae?: unknown; hflip?: unknown },
  resume?: ResumePoint<TrainingCheckpoint>,
): Promise<LatentSource | undefined> {
  let src: LatentSource | undefined;
  const saved = resume?.ckpt.latent;
  if (saved) src = { vqvae: saved.vqvae, scale: saved.scale, from: resume.path };
  else if (resume && given.vqvae !== undefined) {
    throw new UsageError(
      `--vqvae ${given.vqvae}: ${resume.path} is a pixel-space model (a resumed run keeps its ` +
        "model; start a new run for latent flow matching)",
    );
  } else if (given.vqvae !== undefined) {
    const path = String(given.vqvae);
    src = { vqvae: await readVqvae(path), from: path };
  }
  if (src && given.hflip) {
    throw new UsageError("--hflip flips images, not latents: drop it for a latent run (--vqvae)");
  }
  return src;
}

/** The latent grid the DiT trains on: [code_dim, image_size/4, image_size/4]. */
export function latentShape(
  src: LatentSource,
  data: Dataset,
  what: string,
): { imageSize: number; channels: number; numClasses: number } {
  const cfg = src.vqvae.cfg;
  if (data.imageSize !== cfg.image_size || data.channels !== cfg.in_channels) {
    throw new UsageError(
      `the VQ-VAE of ${src.from} encodes ${cfg.in_channels}×${cfg.image_size}² images, ` +
        `${what} has ${data.channels}×${data.imageSize}²`,
    );
  }
  return { imageSize: cfg.image_size / 4, channels: cfg.code_dim, numClasses: data.numClasses };
}

/** A fingerprint of the VQ-VAE's weights: a cache made by another VQ-VAE is not reused. */
function fingerprint(w: VqvaeWeights): number {
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const p = bytes(w.params), s = bytes(w.state);
  const all = new Uint8Array(p.length + s.length);
  all.set(p);
  all.set(s, p.length);
  return crc32(all);
}

interface CacheMeta {
  vqvae_crc32: number;
  images: number;
  dataset: string;
}

/** The cached latents of this VQ-VAE and dataset, or undefined (absent, stale or unreadable). */
async function readCache(
  path: string,
  want: CacheMeta,
  zPer: number,
): Promise<{ latents: Float32Array; labels: Int32Array } | undefined> {
  let bytes;
  try {
    bytes = await Deno.readFile(path);
  } catch {
    return undefined;
  }
  try {
    const { tensors, metadata } = decodeSafetensors(bytes);
    const meta = JSON.parse(metadata?.[CACHE_KEY] ?? "null") as CacheMeta | null;
    const latents = tensors.get("latents")?.data, labels = tensors.get("labels")?.data;
    if (
      !meta || JSON.stringify(meta) !== JSON.stringify(want) || !latents || !labels ||
      latents.length !== want.images * zPer || labels.length !== want.images
    ) {
      console.log(`latents: ${path} is of another VQ-VAE or dataset; encoding again`);
      return undefined;
    }
    return { latents, labels: Int32Array.from(labels) };
  } catch (e) {
    warn(`latents: ${path} does not load (${(e as Error).message}); encoding again`);
    return undefined;
  }
}

/**
 * The training set as scaled latents: the run directory's cache when it matches, else `data`
 * encoded on the GPU (and cached). Returns the dataset and the run's latent space.
 */
export async function latentDataset(
  k: Kernels,
  src: LatentSource,
  data: Dataset,
  runDir: string,
  datasetName: string,
): Promise<{ data: LatentDataset; space: LatentSpace }> {
  const cfg = src.vqvae.cfg, h = cfg.image_size / 4, zPer = cfg.code_dim * h * h;
  const path = join(runDir, CACHE);
  const want: CacheMeta = {
    vqvae_crc32: fingerprint(src.vqvae),
    images: data.length,
    dataset: datasetName,
  };
  let z = await readCache(path, want, zPer);
  if (z) console.log(`latents: ${data.length} from ${path}`);
  else {
    const t0 = performance.now();
    const vq = new VQVAE(k, cfg, src.vqvae.params, src.vqvae.state);
    try {
      z = await encodeDataset(vq, data, { batch: 256 });
    } finally {
      vq.dispose();
    }
    const tensors = [
      { name: "latents", shape: [data.length, cfg.code_dim, h, h], data: z.latents },
      { name: "labels", shape: [data.length], data: Float32Array.from(z.labels) },
    ];
    await writeFileAtomic(path, encodeSafetensors(tensors, { [CACHE_KEY]: JSON.stringify(want) }));
    console.log(
      `latents: encoded ${data.length} images in ${
        ((performance.now() - t0) / 1000).toFixed(1)
      } s, cached in ${path}`,
    );
  }
  const scale = src.scale ?? latentScale(z.latents);
  console.log(
    `latent space: the VQ-VAE of ${src.from} (K=${cfg.codebook_size}, D=${cfg.code_dim}): ` +
      `${cfg.code_dim}×${h}² latents of ${cfg.in_channels}×${cfg.image_size}² images, ` +
      `scale ${scale.toPrecision(6)} (unit variance)`,
  );
  const ds = new LatentDataset(
    scaleLatents(z.latents, scale),
    z.labels,
    cfg.code_dim,
    h,
    data.numClasses,
    data.classNames,
  );
  return { data: ds, space: { vqvae: src.vqvae, scale } };
}
