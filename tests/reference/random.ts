/** Seeded random data for tests: fresh seed each run (printed), or FLOWGPU_TEST_SEED to replay. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const envSeed = Deno.env.get("FLOWGPU_TEST_SEED");
/** The seed of this test process. */
export const TEST_SEED = envSeed ? Number(envSeed) : (Date.now() ^ (Math.random() * 2 ** 31)) >>> 0;

export class Rng {
  private u: () => number;
  constructor(seed: number = TEST_SEED) {
    this.u = mulberry32(seed);
  }
  uniform(): number {
    return this.u();
  }
  normal(): number {
    const u1 = Math.max(this.u(), 1e-300), u2 = this.u();
    return Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  /** n standard normals times `scale`, rounded to f32 so GPU and reference see the same values. */
  normals(n: number, scale = 1): Float64Array {
    const a = new Float64Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.fround(this.normal() * scale);
    return a;
  }
  ints(n: number, max: number): Int32Array {
    const a = new Int32Array(n);
    for (let i = 0; i < n; i++) a[i] = Math.floor(this.u() * max);
    return a;
  }
}
