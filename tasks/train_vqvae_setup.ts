/**
 * What a `train-vqvae` run trains on and writes first: the training and held-out images per
 * dataset (the Fashion-MNIST or CIFAR-10 test set where present, else a fixed 10%), the network's
 * config from the options and the image shape, and the run directory's config.json.
 */
import { join } from "node:path";
import {
  ArrayDataset,
  cifar10FromBytes,
  type Dataset,
  fashionMnistFromBytes,
  holdOut,
  loadDataset,
  loadEmoji,
  resolveVqvaeConfig,
  VQVAE_KEYS,
  type VQVAEConfig,
  type VqvaeTrainOptions,
} from "../mod.ts";
import { DEBIAN_FASHION_MNIST } from "../src/io/datasets.ts";
import { UsageError } from "./cli.ts";

/** Options that define the network (fixed by a checkpoint on resume): the config's keys. */
export const MODEL_KEYS = VQVAE_KEYS;

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

/** Training images and held-out images, and where the held-out ones come from. */
export async function loadSplits(
  o: VqvaeTrainOptions,
): Promise<{ train: Dataset; heldOut: Dataset; note: string }> {
  const tenth = (ds: Dataset, what: string) => {
    if (!(ds instanceof ArrayDataset)) throw new Error(`${what}: cannot hold out images`);
    const s = holdOut(ds);
    return { train: s.train, heldOut: s.heldOut, note: `a fixed 10% of ${what} held out` };
  };
  switch (o.dataset) {
    case "emoji": {
      const log = (l: string) => console.log(l);
      const r = await loadEmoji({ dir: o.data, imageSize: o.image_size ?? 32, log });
      return { train: r.train, heldOut: r.heldOut, note: "10% of each category held out" };
    }
    case "fashion-mnist": {
      const train = await loadDataset("fashion-mnist", o.data);
      const dir = o.data ?? DEBIAN_FASHION_MNIST;
      const [im, lb] = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        .map((f) => join(dir, f));
      if (train.length >= 60000 && await exists(im) && await exists(lb)) {
        const [ib, lbb] = [await Deno.readFile(im), await Deno.readFile(lb)];
        const test = await fashionMnistFromBytes(ib, lbb, [im, lb]);
        return { train, heldOut: test, note: `the Fashion-MNIST test set (${im})` };
      }
      return tenth(train, "the Fashion-MNIST images");
    }
    case "cifar10": {
      if (!o.data) throw new Error("give the folder of the .bin batches with --data");
      const train = await loadDataset("cifar10", o.data);
      for (const p of ["test_batch.bin", "cifar-10-batches-bin/test_batch.bin"]) {
        const path = join(o.data, p);
        if (await exists(path)) {
          return {
            train,
            heldOut: cifar10FromBytes([await Deno.readFile(path)], [path]),
            note: path,
          };
        }
      }
      return tenth(train, "CIFAR-10");
    }
    case "default":
      return tenth(await loadDataset("default"), "the embedded Fashion-MNIST subset");
    default: // folder
      return tenth(await loadDataset("folder", o.data, { imageSize: o.image_size }), o.data ?? "");
  }
}

/** The network's config from the options and the image shape. */
export function vqvaeConfig(
  o: VqvaeTrainOptions,
  imageSize: number,
  channels: number,
): VQVAEConfig {
  try {
    return resolveVqvaeConfig({
      ...Object.fromEntries(MODEL_KEYS.map((key) => [key, o[key]])),
      image_size: imageSize,
      in_channels: channels,
    });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/** The run directory's folders and config.json. */
export async function writeRunConfig(
  runDir: string,
  cfg: VQVAEConfig,
  opts: VqvaeTrainOptions,
  data: { train: Dataset; heldOut: Dataset; note: string },
  from?: string,
) {
  await Deno.mkdir(join(runDir, "checkpoints"), { recursive: true });
  await Deno.mkdir(join(runDir, "samples"), { recursive: true });
  const dataset = {
    name: opts.dataset,
    train: data.train.length,
    held_out: data.heldOut.length,
    held_out_from: data.note,
  };
  const config = {
    vqvae: cfg,
    train: opts,
    dataset,
    class_names: data.train.classNames ?? [],
    resumed_from: from,
  };
  await Deno.writeTextFile(join(runDir, "config.json"), JSON.stringify(config, null, 2) + "\n");
}
