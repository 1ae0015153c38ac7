/**
 * Seeded, platform-independent random numbers for synthesized weights. Only 32-bit integer operations
 * and exact float arithmetic are used (no Math.log/Math.cos), so a seed gives the same bytes on every
 * machine and Node version (Math.sqrt is correctly rounded by IEEE 754; the callers use it, not `**`).
 *
 * Every tensor gets its own generator, seeded from (model seed, tensor name): the values of a weight do
 * not depend on the order in which tensors are written, so the fp32, fp16 and q8 files of one seed hold
 * the same weights.
 */

/** FNV-1a (32-bit) of a string's UTF-16 code units. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** splitmix32 step: a well-mixed 32-bit value from a counter. */
function splitmix32(state: number): number {
  let z = (state + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

/**
 * xoshiro128** (Blackman & Vigna): fast, 2^128 - 1 period, good statistical quality.
 *
 * @example
 *   const rng = Xoshiro128.forTensor(0, 'vision_model.embeddings.class_embedding');
 *   rng.nextUint32(); // the same number for the same seed and name, everywhere
 */
export class Xoshiro128 {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;

  constructor(seed: number) {
    let x = seed >>> 0;
    x = splitmix32(x);
    this.s0 = x;
    x = splitmix32(x);
    this.s1 = x;
    x = splitmix32(x);
    this.s2 = x;
    x = splitmix32(x);
    this.s3 = x;
    if ((this.s0 | this.s1 | this.s2 | this.s3) === 0) this.s0 = 1;
  }

  /** A generator for one tensor of one model: seeded from both, independent of any other tensor. */
  static forTensor(seed: number, name: string): Xoshiro128 {
    return new Xoshiro128(splitmix32((seed >>> 0) ^ splitmix32(fnv1a(name))) ^ fnv1a(`${name}#${seed}`));
  }

  nextUint32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9);
    const t = this.s1 << 9;
    this.s2 ^= this.s0;
    this.s3 ^= this.s1;
    this.s1 ^= this.s2;
    this.s0 ^= this.s3;
    this.s2 ^= t;
    this.s3 = rotl(this.s3, 11);
    return result >>> 0;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

/** Scale that turns a sum of four 16-bit uniforms (centred) into unit variance: √3 / 65536. */
const IRWIN_HALL_SCALE = Math.sqrt(3) / 65536;
const IRWIN_HALL_MEAN = 2 * 65535;

/**
 * Fills `out` with approximately normal values (Irwin–Hall: the sum of four uniforms), mean `mean` and
 * standard deviation `std`, bounded to ±3.46 std, which keeps activations of random networks tame.
 *
 * @example
 *   const w = new Float32Array(768 * 768);
 *   fillNormal(w, Xoshiro128.forTensor(0, 'q_proj.weight'), 0, 0.036);
 */
export function fillNormal(out: Float32Array, rng: Xoshiro128, mean: number, std: number): Float32Array {
  const k = IRWIN_HALL_SCALE * std;
  for (let i = 0; i < out.length; i++) {
    const a = rng.nextUint32();
    const b = rng.nextUint32();
    const sum = (a & 0xffff) + (a >>> 16) + (b & 0xffff) + (b >>> 16);
    out[i] = mean + (sum - IRWIN_HALL_MEAN) * k;
  }
  return out;
}
