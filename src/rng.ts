/**
 * The one seeded random number generator of the library (web-standard, no dependencies):
 * xoshiro128** with a 128-bit state (period 2^128 − 1). Its state is four numbers that survive
 * JSON, so a resumed run continues the same stream. Used by the data order (data/), the flow
 * draws (flow/), image noise and parameter init (model/).
 */

/** One 32-bit mix (splitmix32 finaliser). */
export function mix32(x: number): number {
  x = (x + 0x9e3779b9) >>> 0;
  x = Math.imul(x ^ (x >>> 16), 0x85ebca6b) >>> 0;
  x = Math.imul(x ^ (x >>> 13), 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** FNV-1a 32-bit hash of a string (stream names). */
export function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** Serialisable state of a `SeededRng`: four u32 words, not all zero. */
export type RngState = [number, number, number, number];

export class SeededRng {
  private s = new Uint32Array(4);

  /** A stream from a seed (any integer, taken mod 2³²) or a saved state. */
  constructor(seed: number | RngState = 0) {
    if (typeof seed === "number") {
      let x = seed >>> 0;
      for (let i = 0; i < 4; i++) {
        x = mix32(x + i);
        this.s[i] = x;
      }
      if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    } else this.setState(seed);
  }

  /**
   * An independent named stream of `seed` (parameter init: each tensor has its own, so its values
   * do not depend on which other tensors exist). State words by splitmix32 from seed ^ hash(name).
   */
  static stream(seed: number, name: string): SeededRng {
    let st = (Math.trunc(seed) ^ hashString(name)) >>> 0;
    const words: number[] = [];
    for (let i = 0; i < 4; i++) {
      words.push(mix32(st));
      st = (st + 0x9e3779b9) >>> 0;
    }
    if (!words.some((w) => w !== 0)) words[0] = 1;
    return new SeededRng(words as RngState);
  }

  /** The state, to save; `new SeededRng(state)` or `setState` continues the same stream. */
  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  setState(st: RngState): void {
    if (st.length !== 4 || st.every((w) => (w >>> 0) === 0)) {
      throw new Error(`rng: invalid state ${JSON.stringify(st)}`);
    }
    for (let i = 0; i < 4; i++) this.s[i] = st[i] >>> 0;
  }

  /** A uniform u32. */
  u32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** Uniform in [0, 1) with 32 random bits. */
  uniform(): number {
    return this.u32() / 4294967296;
  }

  /** Uniform in [0, 1) with 53 random bits (two draws). */
  uniform53(): number {
    const hi = this.u32() >>> 5, lo = this.u32() >>> 6;
    return (hi * 67108864 + lo) / 9007199254740992;
  }

  /** Uniform integer in [0, n) (n ≤ 2^32), without modulo bias. */
  int(n: number): number {
    if (n <= 1) return 0;
    const limit = 4294967296 - (4294967296 % n);
    let x: number;
    do x = this.u32(); while (x >= limit);
    return x % n;
  }

  /** Fill `out` with standard normals (Box–Muller; both values of each pair used). */
  normals(out: Float32Array | Float64Array): typeof out {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = (this.u32() + 1) / 4294967297; // (0, 1]: no log(0)
      const u2 = this.uniform();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  /** Standard normals from 53-bit uniforms (parameter init): pairs (r·cos, r·sin). */
  normals53(out: Float32Array | Float64Array): typeof out {
    for (let i = 0; i < out.length; i += 2) {
      const u1 = 1 - this.uniform53(); // (0, 1]
      const u2 = this.uniform53();
      const r = Math.sqrt(-2 * Math.log(u1));
      out[i] = r * Math.cos(2 * Math.PI * u2);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
    }
    return out;
  }

  /** One standard normal (uses a fresh pair). */
  normal(): number {
    return this.normals(new Float64Array(1))[0];
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
