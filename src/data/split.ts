/**
 * A fixed held-out split of an in-memory dataset (for datasets without an official test set):
 * the same images are held out whatever the training seed. Web-standard only.
 */
import { ArrayDataset, shuffle } from "./dataset.ts";
import { SeededRng } from "../rng.ts";

/** Copy the examples `indices` (in that order) into a new dataset. */
export function subset(ds: ArrayDataset, indices: ArrayLike<number>): ArrayDataset {
  const per = ds.channels * ds.imageSize * ds.imageSize;
  const pixels = new Uint8Array(indices.length * per);
  const labels = new Int32Array(indices.length);
  for (let j = 0; j < indices.length; j++) {
    const i = indices[j];
    pixels.set(ds.pixels.subarray(i * per, (i + 1) * per), j * per);
    labels[j] = ds.labels[i];
  }
  return new ArrayDataset(pixels, labels, ds.channels, ds.imageSize, ds.numClasses, ds.classNames);
}

/**
 * Hold out round(fraction·N) examples chosen by a fixed permutation; both parts keep the
 * original order. Throws if either part would be empty.
 */
export function holdOut(
  ds: ArrayDataset,
  fraction = 0.1,
): { train: ArrayDataset; heldOut: ArrayDataset } {
  const n = Math.round(ds.length * fraction);
  if (n < 1 || n >= ds.length) {
    throw new Error(`cannot hold out ${fraction} of ${ds.length} images: one part would be empty`);
  }
  const perm = shuffle(Int32Array.from({ length: ds.length }, (_, i) => i), new SeededRng(0x5e1d));
  const held = perm.subarray(0, n).sort();
  const isHeld = new Uint8Array(ds.length);
  for (const i of held) isHeld[i] = 1;
  const rest = Int32Array.from({ length: ds.length }, (_, i) => i).filter((i) => !isHeld[i]);
  return { train: subset(ds, rest), heldOut: subset(ds, held) };
}
