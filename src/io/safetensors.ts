/**
 * safetensors (https://github.com/huggingface/safetensors) encoding and strict decoding on
 * Uint8Array, web-standard only.
 *
 * File: u64 little-endian header length N, N bytes of UTF-8 JSON header, then the data buffer.
 * Header: {"__metadata__": {string: string}, name: {"dtype", "shape", "data_offsets": [b, e]}}
 * with offsets relative to the data buffer; the tensors must tile it exactly (no gap, no overlap).
 *
 * The encoder writes F32 (or F16 for tensors that ask for it), tensors in the given order, header space-padded to 8 bytes, plus a
 * CRC-32 under metadata key "flowgpu.crc32" covering every tensor's name, dtype, shape, offsets,
 * the other metadata and the data bytes. The decoder accepts F32/F16/BF16 (returned as f32), from
 * any writer; when the checksum key is present it is verified, so a corrupted flowgpu file is
 * refused instead of decoding to different values. Every problem is a SafetensorsError.
 *
 * Checksum: 8 lowercase hex digits of the standard CRC-32 (zlib.crc32) of the UTF-8 text
 * JSON.stringify([[[name, dtype, shape, begin, end] per tensor, sorted by (begin, end, name)],
 * [[key, value] per other metadata entry, sorted by key]]) followed by the data buffer. A file
 * corrupted in one place is always refused (or, for harmless edits such as whitespace, decodes
 * to the same tensors); corruption that also renames the checksum key turns it into a file
 * without a checksum, which is accepted as any foreign file is.
 */

/** Any refusal of the decoder (or bad input to the encoder). */
export class SafetensorsError extends Error {
  constructor(message: string) {
    super(`safetensors: ${message}`);
    this.name = "SafetensorsError";
  }
}

/** A tensor to encode. `data.length` must equal the product of `shape`. */
export interface TensorIn {
  name: string;
  shape: number[];
  data: Float32Array;
  /** Stored type: F32 (default), or F16 (rounded to nearest; |values| must stay ≤ 65504). */
  dtype?: "F32" | "F16";
}

/** A decoded tensor: `dtype` is the file's (F32, F16 or BF16), `data` always f32. */
export interface DecodedTensor {
  shape: number[];
  dtype: string;
  data: Float32Array;
}

export interface Decoded {
  /** In data (offset) order: the encoder's order. */
  tensors: Map<string, DecodedTensor>;
  /** The `__metadata__` entries (the checksum key removed once verified). */
  metadata: Record<string, string>;
}

/** Largest header accepted (the reference implementation's limit). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Metadata key of the integrity checksum the encoder writes. */
export const CHECKSUM_KEY = "flowgpu.crc32";

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
const KNOWN_UNSUPPORTED = new Set([
  "F64",
  "F8_E4M3",
  "F8_E5M2",
  "I64",
  "I32",
  "I16",
  "I8",
  "U64",
  "U32",
  "U16",
  "U8",
  "BOOL",
]);
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// encode
// ---------------------------------------------------------------------------------------------

/** Encode tensors (stored as F32) and string metadata into a safetensors file. */
export function encodeSafetensors(
  tensors: TensorIn[],
  metadata: Record<string, string> = {},
): Uint8Array {
  const meta: Record<string, string> = {};
  for (const [k, v] of Object.entries(metadata)) {
    if (typeof v !== "string") throw new SafetensorsError(`metadata "${k}" is not a string`);
    if (k === CHECKSUM_KEY) throw new SafetensorsError(`metadata key "${k}" is reserved`);
    meta[k] = v;
  }
  const names = new Set<string>();
  const entries: Entry[] = [];
  let offset = 0;
  for (const t of tensors) {
    if (typeof t.name !== "string" || t.name === "" || t.name === "__metadata__") {
      throw new SafetensorsError(`invalid tensor name ${JSON.stringify(t.name)}`);
    }
    if (names.has(t.name)) throw new SafetensorsError(`duplicate tensor name "${t.name}"`);
    names.add(t.name);
    if (
      !Array.isArray(t.shape) || !t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)
    ) {
      throw new SafetensorsError(`tensor "${t.name}": invalid shape ${JSON.stringify(t.shape)}`);
    }
    if (!(t.data instanceof Float32Array)) {
      throw new SafetensorsError(`tensor "${t.name}": data is not a Float32Array`);
    }
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n !== t.data.length) {
      throw new SafetensorsError(
        `tensor "${t.name}": shape [${t.shape}] has ${n} elements, data has ${t.data.length}`,
      );
    }
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(t.data[i])) {
        throw new SafetensorsError(`tensor "${t.name}": non-finite value ${t.data[i]} at [${i}]`);
      }
    }
    const dtype = t.dtype ?? "F32";
    if (dtype !== "F32" && dtype !== "F16") {
      throw new SafetensorsError(`tensor "${t.name}": cannot encode dtype ${dtype} (F32 or F16)`);
    }
    if (dtype === "F16") {
      for (let i = 0; i < n; i++) {
        if (Math.abs(t.data[i]) > 65504) {
          throw new SafetensorsError(`tensor "${t.name}": ${t.data[i]} at [${i}] overflows F16`);
        }
      }
    }
    const size = dtype === "F16" ? 2 : 4;
    entries.push({
      name: t.name,
      dtype,
      shape: [...t.shape],
      begin: offset,
      end: offset + size * n,
    });
    offset += size * n;
  }
  const body = new Uint8Array(offset);
  const bodyView = new DataView(body.buffer);
  for (let k = 0; k < tensors.length; k++) {
    const d = tensors[k].data, o = entries[k].begin;
    if (entries[k].dtype === "F16") {
      const h = new Float16Array(d); // round to nearest even
      for (let j = 0; j < h.length; j++) bodyView.setFloat16(o + 2 * j, h[j], true);
    } else if (LITTLE_ENDIAN) body.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), o);
    else for (let j = 0; j < d.length; j++) bodyView.setFloat32(o + 4 * j, d[j], true);
  }
  let crc = crc32Update(0xffffffff, new TextEncoder().encode(canonical(entries, meta)));
  crc = crc32Update(crc, body);
  // Header text in a fixed order: __metadata__ first (so the checksum sits far from the data),
  // then the tensors in data order (JS objects would move integer-like names first).
  const metaOut = { ...meta, [CHECKSUM_KEY]: hex32(~crc >>> 0) };
  const parts = [`"__metadata__":${JSON.stringify(metaOut)}`];
  for (const e of entries) {
    parts.push(
      `${JSON.stringify(e.name)}:${
        JSON.stringify({ dtype: e.dtype, shape: e.shape, data_offsets: [e.begin, e.end] })
      }`,
    );
  }
  let json = new TextEncoder().encode(`{${parts.join(",")}}`);
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  if (json.length > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`header of ${json.length} bytes exceeds ${MAX_HEADER_BYTES}`);
  }
  const out = new Uint8Array(8 + json.length + body.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, json.length, true);
  dv.setUint32(4, 0, true);
  out.set(json, 8);
  out.set(body, 8 + json.length);
  return out;
}

// ---------------------------------------------------------------------------------------------
// decode
// ---------------------------------------------------------------------------------------------

interface Entry {
  name: string;
  dtype: string;
  shape: number[];
  begin: number;
  end: number;
}

/**
 * Decode a safetensors file strictly. Refuses (SafetensorsError) a short file, a header length
 * that is too large or beyond the file, a header that is not UTF-8 JSON of the expected form
 * (duplicate keys included), an unknown or unsupported dtype, a shape whose size differs from its
 * byte range, offsets outside the data or that overlap or leave gaps, data not covered exactly,
 * non-finite values, and a checksum mismatch.
 */
export function decodeSafetensors(bytes: Uint8Array): Decoded {
  try {
    return decode(bytes);
  } catch (e) {
    if (e instanceof SafetensorsError) throw e;
    // Defensive: anything unexpected still surfaces as a refusal, never another type.
    throw new SafetensorsError(`cannot decode: ${e instanceof Error ? e.message : String(e)}`);
  }
}

function decode(bytes: Uint8Array): Decoded {
  if (!(bytes instanceof Uint8Array)) throw new SafetensorsError("input is not a Uint8Array");
  if (bytes.length < 8) {
    throw new SafetensorsError(`file of ${bytes.length} bytes is too short for a header length`);
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = dv.getUint32(0, true), hi = dv.getUint32(4, true);
  const n = hi * 4294967296 + lo;
  if (hi !== 0 || n > MAX_HEADER_BYTES) {
    throw new SafetensorsError(`header length ${n} is too large (limit ${MAX_HEADER_BYTES})`);
  }
  if (n < 2) throw new SafetensorsError(`header length ${n} is too small`);
  if (8 + n > bytes.length) {
    throw new SafetensorsError(
      `header length ${n} runs past the end of the file (${bytes.length} bytes)`,
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(
      bytes.subarray(8, 8 + n),
    );
  } catch {
    throw new SafetensorsError("header is not valid UTF-8");
  }
  if (text[0] !== "{") throw new SafetensorsError("header does not start with '{'");
  const root = parseJson(text);
  if (!isObject(root)) throw new SafetensorsError("header is not a JSON object");

  const dataStart = 8 + n, dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, info] of Object.entries(root)) {
    if (name === "__metadata__") {
      if (info === null) continue;
      if (!isObject(info)) throw new SafetensorsError("__metadata__ is not an object");
      for (const [k, v] of Object.entries(info)) {
        if (typeof v !== "string") {
          throw new SafetensorsError(`metadata "${k}" is not a string`);
        }
        metadata[k] = v;
      }
      continue;
    }
    entries.push(parseEntry(name, info, dataLen));
  }

  // The tensors must tile the data buffer exactly.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let pos = 0;
  for (const e of sorted) {
    if (e.begin < pos) {
      throw new SafetensorsError(
        `tensor "${e.name}" overlaps another (offset ${e.begin} < ${pos})`,
      );
    }
    if (e.begin > pos) {
      throw new SafetensorsError(
        `gap in the data buffer: bytes ${pos}..${e.begin} before tensor "${e.name}" are unused`,
      );
    }
    pos = e.end;
  }
  if (pos !== dataLen) {
    throw new SafetensorsError(
      `tensors cover ${pos} bytes but the data buffer has ${dataLen} (truncated or trailing data)`,
    );
  }

  if (Object.hasOwn(metadata, CHECKSUM_KEY)) {
    const want = metadata[CHECKSUM_KEY];
    if (!/^[0-9a-f]{8}$/.test(want)) {
      throw new SafetensorsError(`metadata ${CHECKSUM_KEY} "${want}" is not 8 hex digits`);
    }
    const rest = { ...metadata };
    delete rest[CHECKSUM_KEY];
    // Canonical form lists tensors in offset order (the encoder's order).
    let crc = crc32Update(0xffffffff, new TextEncoder().encode(canonical(sorted, rest)));
    crc = crc32Update(crc, bytes.subarray(dataStart));
    const got = hex32(~crc >>> 0);
    if (got !== want) {
      throw new SafetensorsError(`checksum mismatch (stored ${want}, computed ${got}): corrupted`);
    }
    delete metadata[CHECKSUM_KEY];
  }

  const tensors = new Map<string, DecodedTensor>();
  for (const e of sorted) {
    const raw = bytes.subarray(dataStart + e.begin, dataStart + e.end);
    const data = convert(raw, e.dtype);
    for (let i = 0; i < data.length; i++) {
      if (!Number.isFinite(data[i])) {
        throw new SafetensorsError(`tensor "${e.name}": non-finite value ${data[i]} at [${i}]`);
      }
    }
    tensors.set(e.name, { shape: e.shape, dtype: e.dtype, data });
  }
  return { tensors, metadata };
}

function parseEntry(name: string, info: unknown, dataLen: number): Entry {
  const where = `tensor "${name}"`;
  if (name === "") throw new SafetensorsError("empty tensor name");
  if (!isObject(info)) throw new SafetensorsError(`${where}: entry is not an object`);
  for (const k of Object.keys(info)) {
    if (k !== "dtype" && k !== "shape" && k !== "data_offsets") {
      throw new SafetensorsError(`${where}: unknown field "${k}"`);
    }
  }
  const dtype = info.dtype;
  if (typeof dtype !== "string") throw new SafetensorsError(`${where}: dtype missing`);
  if (!Object.hasOwn(DTYPE_BYTES, dtype)) {
    throw new SafetensorsError(
      KNOWN_UNSUPPORTED.has(dtype)
        ? `${where}: unsupported dtype ${dtype} (F32, F16, BF16 only)`
        : `${where}: unknown dtype ${JSON.stringify(dtype)}`,
    );
  }
  const shape = info.shape;
  if (!Array.isArray(shape)) throw new SafetensorsError(`${where}: shape missing`);
  for (const d of shape) {
    if (typeof d !== "number" || !Number.isSafeInteger(d) || d < 0) {
      throw new SafetensorsError(`${where}: invalid shape ${JSON.stringify(shape)}`);
    }
  }
  const offs = info.data_offsets;
  if (
    !Array.isArray(offs) || offs.length !== 2 ||
    !offs.every((o) => typeof o === "number" && Number.isSafeInteger(o) && o >= 0)
  ) {
    throw new SafetensorsError(`${where}: invalid data_offsets ${JSON.stringify(offs)}`);
  }
  const [begin, end] = offs as number[];
  if (begin > end) throw new SafetensorsError(`${where}: data_offsets [${begin}, ${end}] reversed`);
  if (end > dataLen) {
    throw new SafetensorsError(
      `${where}: data_offsets [${begin}, ${end}] outside the data buffer (${dataLen} bytes)`,
    );
  }
  // Element count, stopping early once it cannot match (no overflow on absurd shapes).
  const size = DTYPE_BYTES[dtype];
  let count = 1;
  for (const d of shape) {
    count *= d;
    if (count * size > end - begin) break;
  }
  if (count * size !== end - begin) {
    throw new SafetensorsError(
      `${where}: shape [${shape}] of ${dtype} does not match its ${end - begin} bytes`,
    );
  }
  return { name, dtype, shape: shape as number[], begin, end };
}

function convert(raw: Uint8Array, dtype: string): Float32Array {
  if (dtype === "F32") {
    const copy = raw.slice(); // aligned copy
    if (LITTLE_ENDIAN) return new Float32Array(copy.buffer, 0, copy.length / 4);
    const dv = new DataView(copy.buffer);
    return Float32Array.from({ length: copy.length / 4 }, (_, i) => dv.getFloat32(4 * i, true));
  }
  const n = raw.length / 2;
  const out = new Float32Array(n);
  if (dtype === "BF16") {
    const dv = new DataView(out.buffer);
    for (let i = 0; i < n; i++) {
      dv.setUint32(4 * i, ((raw[2 * i] | (raw[2 * i + 1] << 8)) << 16) >>> 0, LITTLE_ENDIAN);
    }
    return out;
  }
  for (let i = 0; i < n; i++) out[i] = halfToFloat(raw[2 * i] | (raw[2 * i + 1] << 8));
  return out;
}

/** IEEE 754 binary16 bits → number. */
export function halfToFloat(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function canonical(entries: Entry[], meta: Record<string, string>): string {
  const keys = Object.keys(meta).sort();
  const order = [...entries].sort((a, b) =>
    a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  return JSON.stringify([
    order.map((e) => [e.name, e.dtype, e.shape, e.begin, e.end]),
    keys.map((k) => [k, meta[k]]),
  ]);
}

/** CRC-32 (IEEE) tables for slicing-by-8: table k maps a byte k positions back. */
const CRC_TABLES = (() => {
  const t = new Uint32Array(8 * 256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let k = 1; k < 8; k++) {
      t[k * 256 + i] = (t[(k - 1) * 256 + i] >>> 8) ^ t[t[(k - 1) * 256 + i] & 0xff];
    }
  }
  return t;
})();

function crc32Update(crc: number, b: Uint8Array): number {
  const T = CRC_TABLES;
  let c = crc >>> 0, i = 0;
  const n8 = b.length - (b.length % 8);
  for (; i < n8; i += 8) {
    const lo = (c ^ (b[i] | (b[i + 1] << 8) | (b[i + 2] << 16) | (b[i + 3] << 24))) >>> 0;
    c = T[1792 + (lo & 0xff)] ^ T[1536 + ((lo >>> 8) & 0xff)] ^ T[1280 + ((lo >>> 16) & 0xff)] ^
      T[1024 + (lo >>> 24)] ^ T[768 + b[i + 4]] ^ T[512 + b[i + 5]] ^ T[256 + b[i + 6]] ^
      T[b[i + 7]];
  }
  for (; i < b.length; i++) c = T[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

function hex32(v: number): string {
  return (v >>> 0).toString(16).padStart(8, "0");
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

// ---------------------------------------------------------------------------------------------
// strict JSON (RFC 8259; duplicate keys and deep nesting refused)
// ---------------------------------------------------------------------------------------------

const MAX_DEPTH = 64;

function parseJson(text: string): unknown {
  let i = 0;
  const fail = (what: string): never => {
    throw new SafetensorsError(`header is not valid JSON: ${what} at character ${i}`);
  };
  const ws = () => {
    while (i < text.length) {
      const c = text.charCodeAt(i);
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) i++;
      else break;
    }
  };
  const str = (): string => {
    // at '"'
    i++;
    let out = "";
    let start = i;
    while (true) {
      if (i >= text.length) fail("unterminated string");
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        out += text.slice(start, i);
        i++;
        return out;
      }
      if (c < 0x20) fail("control character in string");
      if (c === 0x5c) {
        out += text.slice(start, i);
        const e = text[i + 1];
        const simple: Record<string, string> = {
          '"': '"',
          "\\": "\\",
          "/": "/",
          b: "\b",
          f: "\f",
          n: "\n",
          r: "\r",
          t: "\t",
        };
        if (e !== undefined && Object.hasOwn(simple, e)) {
          out += simple[e];
          i += 2;
        } else if (e === "u") {
          const h = text.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(h)) fail("bad \\u escape");
          out += String.fromCharCode(parseInt(h, 16));
          i += 6;
        } else fail("bad escape");
        start = i;
        continue;
      }
      i++;
    }
  };
  const NUM = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
  const value = (depth: number): unknown => {
    if (depth > MAX_DEPTH) fail(`nesting deeper than ${MAX_DEPTH}`);
    ws();
    const c = text[i];
    if (c === "{") {
      i++;
      const obj: Record<string, unknown> = {};
      ws();
      if (text[i] === "}") {
        i++;
        return obj;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail("expected a string key");
        const k = str();
        if (Object.hasOwn(obj, k)) fail(`duplicate key ${JSON.stringify(k)}`);
        ws();
        if (text[i] !== ":") fail("expected ':'");
        i++;
        const v = value(depth + 1);
        Object.defineProperty(obj, k, {
          value: v,
          enumerable: true,
          writable: true,
          configurable: true,
        });
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "}") {
          i++;
          return obj;
        }
        fail("expected ',' or '}'");
      }
    }
    if (c === "[") {
      i++;
      const arr: unknown[] = [];
      ws();
      if (text[i] === "]") {
        i++;
        return arr;
      }
      while (true) {
        arr.push(value(depth + 1));
        ws();
        if (text[i] === ",") {
          i++;
          continue;
        }
        if (text[i] === "]") {
          i++;
          return arr;
        }
        fail("expected ',' or ']'");
      }
    }
    if (c === '"') return str();
    if (text.startsWith("true", i)) {
      i += 4;
      return true;
    }
    if (text.startsWith("false", i)) {
      i += 5;
      return false;
    }
    if (text.startsWith("null", i)) {
      i += 4;
      return null;
    }
    NUM.lastIndex = i;
    const m = NUM.exec(text);
    if (!m) return fail("unexpected character");
    i += m[0].length;
    return Number(m[0]);
  };
  const v = value(0);
  ws();
  if (i !== text.length) fail("trailing characters");
  return v;
}
