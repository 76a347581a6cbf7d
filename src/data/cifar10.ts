/**
 * CIFAR-10 binary batches: records of 1 label byte followed by 3072 pixel bytes (1024 red, 1024
 * green, 1024 blue, each 32×32 row-major), i.e. already [C,H,W]. Web-standard only.
 */
import { ArrayDataset } from "./dataset.ts";

export const CIFAR10_CLASSES = [
  "airplane",
  "automobile",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
];

export const CIFAR10_RECORD = 1 + 3 * 32 * 32;

/** CIFAR-10 from the bytes of its binary batch files (e.g. data_batch_1.bin … 5), concatenated. */
export function cifar10FromBytes(files: Uint8Array[], names?: string[]): ArrayDataset {
  if (files.length === 0) throw new Error("cifar10: no batch files given");
  const image = CIFAR10_RECORD - 1;
  let n = 0;
  files.forEach((f, i) => {
    const name = names?.[i] ?? `CIFAR-10 batch file ${i + 1}`;
    if (f.length === 0 || f.length % CIFAR10_RECORD !== 0) {
      throw new Error(
        `${name}: ${f.length} bytes is not a multiple of the ${CIFAR10_RECORD}-byte CIFAR-10 ` +
          `record (1 label byte + 3072 pixel bytes); is this the binary version of CIFAR-10?`,
      );
    }
    n += f.length / CIFAR10_RECORD;
  });
  const pixels = new Uint8Array(n * image);
  const labels = new Uint8Array(n);
  let k = 0;
  files.forEach((f, fi) => {
    for (let r = 0; r < f.length / CIFAR10_RECORD; r++, k++) {
      const off = r * CIFAR10_RECORD;
      const label = f[off];
      if (label >= 10) {
        const name = names?.[fi] ?? `CIFAR-10 batch file ${fi + 1}`;
        throw new Error(`${name}: record ${r} has label ${label}, not in 0..9`);
      }
      labels[k] = label;
      pixels.set(f.subarray(off + 1, off + CIFAR10_RECORD), k * image);
    }
  });
  return new ArrayDataset(pixels, labels, 3, 32, 10, CIFAR10_CLASSES);
}
