/**
 * `train-vqvae --bench`: the median time of a VQ-VAE training step on random images (no dataset,
 * no files) and its per-kernel GPU time, as lines and one JSON line.
 */
import {
  ArrayDataset,
  type Kernels,
  vqvaeParameterCount,
  VqvaeTrainer,
  type VqvaeTrainOptions,
} from "../mod.ts";
import { kernelBreakdown, Timer, timeSteps } from "./bench_timing.ts";
import { vqvaeConfig } from "./train_vqvae_setup.ts";

/** --bench: median time of a training step on random images, and its per-kernel GPU time. */
export async function bench(
  k: Kernels,
  o: VqvaeTrainOptions,
  explicitSteps: boolean,
): Promise<void> {
  const cfg = vqvaeConfig(o, o.image_size ?? 32, o.in_channels ?? 3);
  const n = Math.max(o.batch_size, 256), per = cfg.in_channels * cfg.image_size ** 2;
  const pixels = Uint8Array.from({ length: n * per }, (_, i) => (i * 2654435761) >>> 24);
  const data = new ArrayDataset(pixels, new Int32Array(n), cfg.in_channels, cfg.image_size, 0);
  const trainer = new VqvaeTrainer(k, cfg, { ...o, log_every: 1000 }, data);
  const iters = explicitSteps ? o.train_steps : 10, repeats = 5;
  const med = await timeSteps(k, () => trainer.trainStep(), iters, repeats);
  const timer = new Timer(k);
  const { rows, total } = await kernelBreakdown(timer, trainer.stepDispatches);
  const result = {
    adapter: k.gpu.name,
    image_size: cfg.image_size,
    in_channels: cfg.in_channels,
    channels: cfg.channels,
    res_blocks: cfg.res_blocks,
    codebook_size: cfg.codebook_size,
    code_dim: cfg.code_dim,
    batch_size: o.batch_size,
    parameters: vqvaeParameterCount(cfg),
    step_ms: med,
    images_per_s: o.batch_size / (med / 1e3),
    dispatches: trainer.dispatchCount,
    allocated_bytes: k.allocatedBytes,
    breakdown: rows,
  };
  console.log(
    `VQ-VAE training step: ${med.toFixed(2)} ms (median of ${repeats}×${iters}), ` +
      `${result.images_per_s.toFixed(0)} images/s, ${trainer.dispatchCount} dispatches`,
  );
  console.log(
    `per-kernel (${timer.timestamps ? "timestamp queries" : "wall clock"}, each dispatch in ` +
      `its own pass; sum ${total.toFixed(2)} ms):`,
  );
  for (const e of rows.slice(0, 16)) {
    console.log(
      `  ${e.kernel.padEnd(22)} ${String(e.calls).padStart(4)} ${e.ms.toFixed(3).padStart(9)} ms ` +
        `${(100 * e.ms / total).toFixed(1).padStart(5)}%`,
    );
  }
  console.log(`JSON: ${JSON.stringify(result)}`);
}
