/**
 * Build the embedded default dataset data/fashion-mnist-subset/: a class-balanced subset of the
 * Fashion-MNIST training set (600 images per class, 6000 in all, chosen with a fixed seed, kept
 * in their original order), written as gzipped IDX files, from the Debian package
 * dataset-fashion-mnist (apt-get install -y dataset-fashion-mnist).
 *
 *   deno run -A scripts/make_subset.ts [SOURCE_DIR] [OUT_DIR]
 */
import { encodeIdx, fashionMnistFromBytes, gzip } from "../src/data/fashion_mnist.ts";
import { shuffle } from "../src/data/dataset.ts";
import { SeededRng } from "../src/rng.ts";

const PER_CLASS = 600;
const SEED = 20170825; // Fashion-MNIST's release date

const src = Deno.args[0] ?? "/usr/share/datasets/fashion-mnist";
const out = Deno.args[1] ?? new URL("../data/fashion-mnist-subset/", import.meta.url).pathname;

const imagesPath = `${src}/train-images-idx3-ubyte.gz`;
const labelsPath = `${src}/train-labels-idx1-ubyte.gz`;
let ds;
try {
  ds = await fashionMnistFromBytes(
    await Deno.readFile(imagesPath),
    await Deno.readFile(labelsPath),
    [imagesPath, labelsPath],
  );
} catch (e) {
  console.error(`${(e as Error).message}\n(install: apt-get install -y dataset-fashion-mnist)`);
  Deno.exit(1);
}

const rng = new SeededRng(SEED);
const chosen: number[] = [];
for (let c = 0; c < 10; c++) {
  const idx = Int32Array.from(
    [...Array(ds.length).keys()].filter((i) => ds.labels[i] === c),
  );
  if (idx.length < PER_CLASS) throw new Error(`class ${c} has only ${idx.length} images`);
  chosen.push(...shuffle(idx, rng).subarray(0, PER_CLASS));
}
chosen.sort((a, b) => a - b);

const size = 28 * 28;
const pixels = new Uint8Array(chosen.length * size);
const labels = new Uint8Array(chosen.length);
chosen.forEach((src, k) => {
  pixels.set(ds.pixels.subarray(src * size, (src + 1) * size), k * size);
  labels[k] = ds.labels[src];
});

await Deno.mkdir(out, { recursive: true });
await Deno.writeFile(
  `${out}/train-images-idx3-ubyte.gz`,
  await gzip(encodeIdx([chosen.length, 28, 28], pixels)),
);
await Deno.writeFile(
  `${out}/train-labels-idx1-ubyte.gz`,
  await gzip(encodeIdx([chosen.length], labels)),
);
console.log(`wrote ${chosen.length} images (${PER_CLASS} per class) to ${out}`);
