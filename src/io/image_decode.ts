/**
 * Decoding PNG/JPEG input images (image-folder datasets, the emoji package) with imagescript,
 * loaded only when such images are read. The specifier is computed, so Deno does not resolve the
 * package for every other run (an offline machine without it in the cache then prints nothing),
 * and a browser bundle does not try to include its native loader.
 */

/** What this project uses of an imagescript image: RGBA bytes and the size. */
export interface DecodedImage {
  width: number;
  height: number;
  bitmap: Uint8ClampedArray;
}

const IMAGESCRIPT = ["npm:imagescript", "1.3.1"].join("@");

/** Decode PNG or JPEG bytes to RGBA. */
export async function decodeImage(bytes: Uint8Array): Promise<DecodedImage> {
  const { Image } = await import(IMAGESCRIPT);
  return await Image.decode(bytes);
}
