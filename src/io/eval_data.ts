/**
 * Fashion-MNIST splits for evaluation (Deno file I/O): the t10k test set from a --data folder or
 * Debian's dataset-fashion-mnist package, the training set as `loadFashionMnist` finds it, and
 * both as flat float arrays in [-1, 1] for the classifier.
 */
import { fashionMnistFromBytes } from "../data/fashion_mnist.ts";
import type { ArrayDataset } from "../data/dataset.ts";
import { DEBIAN_FASHION_MNIST, loadFashionMnist } from "./datasets.ts";

const TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] as const;

async function find(dir: string, name: string): Promise<string | undefined> {
  const p = `${dir.replace(/\/$/, "")}/${name}`;
  for (const c of [p, p.replace(/\.gz$/, "")]) {
    if (await Deno.stat(c).then(() => true, () => false)) return c;
  }
  return undefined;
}

/** The Fashion-MNIST test set (t10k files) from `dir`, else Debian's package folder. */
export async function loadFashionMnistTest(dir?: string): Promise<ArrayDataset> {
  const base = dir ?? DEBIAN_FASHION_MNIST;
  const paths = await Promise.all(TEST_FILES.map((f) => find(base, f)));
  if (paths.some((p) => !p)) {
    throw new Error(
      dir
        ? `--data ${dir}: no ${TEST_FILES.join(" / ")} there (the Fashion-MNIST test set)`
        : `no Fashion-MNIST test set: give --data DIR holding ${
          TEST_FILES.join(" and ")
        }, or install Debian's dataset-fashion-mnist (${DEBIAN_FASHION_MNIST})`,
    );
  }
  const [im, lb] = await Promise.all(paths.map((p) => Deno.readFile(p!)));
  return fashionMnistFromBytes(im, lb, [paths[0]!, paths[1]!]);
}

/**
 * The Fashion-MNIST training set: `dir`'s train files when it has them, else Debian's, else the
 * embedded 6,000-image subset.
 */
export async function loadFashionMnistTrain(dir?: string): Promise<ArrayDataset> {
  if (dir && (await find(dir, "train-images-idx3-ubyte.gz"))) return loadFashionMnist(dir);
  return loadFashionMnist();
}

/** Images as [N, C·H·W] floats in [-1, 1] (pixels/127.5 − 1), and the labels. */
export function toFloat(ds: ArrayDataset): { images: Float32Array; labels: Uint8Array } {
  const images = new Float32Array(ds.pixels.length);
  for (let i = 0; i < images.length; i++) images[i] = ds.pixels[i] / 127.5 - 1;
  return { images, labels: Uint8Array.from(ds.labels) };
}
