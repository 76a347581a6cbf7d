/**
 * PNG output with web-standard APIs only (CompressionStream's zlib, a CRC-32 table): identical
 * pixels give identical bytes, and it runs in a browser. Image grids from [-1, 1] tensors here,
 * the loss curve in loss_plot.ts.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (ISO-HDLC, as PNG and zlib's crc32) of `bytes`. */
export function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** zlib (RFC 1950) stream of `data`: deterministic for the same bytes. */
async function zlib(data: Uint8Array): Promise<Uint8Array> {
  const cs = new CompressionStream("deflate");
  const writer = cs.writable.getWriter();
  writer.write(data as Uint8Array<ArrayBuffer>);
  writer.close();
  return new Uint8Array(await new Response(cs.readable).arrayBuffer());
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  dv.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * PNG bytes of an 8-bit image: `channels` 1 (grey), 3 (RGB) or 4 (RGBA) interleaved values,
 * row-major, `width·height·channels` of them.
 */
export async function encodePng(
  pixels: Uint8Array,
  width: number,
  height: number,
  channels: 1 | 3 | 4,
): Promise<Uint8Array> {
  if (!(width >= 1 && height >= 1 && Number.isInteger(width) && Number.isInteger(height))) {
    throw new Error(`PNG: size ${width}×${height} is not a positive integer size`);
  }
  const colorType = { 1: 0, 3: 2, 4: 6 }[channels];
  if (colorType === undefined) throw new Error(`PNG: ${channels} channels (need 1, 3 or 4)`);
  const stride = width * channels;
  if (pixels.length !== stride * height) {
    throw new Error(`PNG: ${pixels.length} values for ${width}×${height}×${channels}`);
  }
  // Each row: filter type 1 (Sub: the difference to the pixel on the left) then the row.
  const raw = new Uint8Array((stride + 1) * height);
  for (let y = 0; y < height; y++) {
    const o = y * (stride + 1), src = y * stride;
    raw[o] = 1;
    for (let x = 0; x < stride; x++) {
      const left = x >= channels ? pixels[src + x - channels] : 0;
      raw[o + 1 + x] = (pixels[src + x] - left) & 0xff;
    }
  }
  const ihdr = new Uint8Array(13);
  const dv = new DataView(ihdr.buffer);
  dv.setUint32(0, width);
  dv.setUint32(4, height);
  ihdr.set([8, colorType, 0, 0, 0], 8); // bit depth 8, colour type, deflate, filter 0, no interlace
  const parts = [
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", await zlib(raw)),
    chunk("IEND", new Uint8Array(0)),
  ];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

const PAD = 2;

/** The 8-bit pixels of an image grid: `width·height·channels` interleaved values. */
export interface GridPixels {
  pixels: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/**
 * The pixels of a grid of `rows × cols` images of a [N, C, H, W] tensor in [-1, 1] (C = 1 grey,
 * 3 RGB; row-major: image r·cols + c), each scaled up by `zoom`, on white with 2-pixel padding;
 * cells past the last image stay white. What `imageGridPng` encodes and a page draws.
 */
export function gridPixels(
  images: Float32Array,
  shape: { channels: number; size: number },
  rows: number,
  cols: number,
  zoom = 1,
): GridPixels {
  const { channels: C, size: H } = shape;
  if (C !== 1 && C !== 3) throw new Error(`PNG grid: ${C} channels (need 1 or 3)`);
  const n = images.length / (C * H * H);
  const cell = H * zoom;
  const W = cols * cell + (cols + 1) * PAD, Ht = rows * cell + (rows + 1) * PAD;
  const px = new Uint8Array(W * Ht * C).fill(255);
  for (let i = 0; i < Math.min(n, rows * cols); i++) {
    const ox = PAD + (i % cols) * (cell + PAD), oy = PAD + Math.floor(i / cols) * (cell + PAD);
    for (let y = 0; y < cell; y++) {
      for (let x = 0; x < cell; x++) {
        const src = i * C * H * H + Math.floor(y / zoom) * H + Math.floor(x / zoom);
        const dst = ((oy + y) * W + ox + x) * C;
        for (let c = 0; c < C; c++) {
          const v = Math.round((images[src + c * H * H] + 1) * 127.5);
          px[dst + c] = v > 255 ? 255 : v > 0 ? v : 0; // NaN → 0
        }
      }
    }
  }
  return { pixels: px, width: W, height: Ht, channels: C };
}

/** `gridPixels` as PNG bytes (grey or RGB). */
export function imageGridPng(
  images: Float32Array,
  shape: { channels: number; size: number },
  rows: number,
  cols: number,
  zoom = 1,
): Promise<Uint8Array> {
  const g = gridPixels(images, shape, rows, cols, zoom);
  return encodePng(g.pixels, g.width, g.height, g.channels);
}

export { lossCurvePng } from "./loss_plot.ts";
