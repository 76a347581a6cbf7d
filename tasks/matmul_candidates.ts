/**
 * The candidate tilings tasks/matmul_bench.ts --sweep times per shape class and precision (the
 * class default first), as choices and as the linear ops' options.
 */
import {
  type Choice,
  DEFAULTS,
  type LinearOptions,
  type ShapeClass,
  SPLIT_LONG,
  SPLIT_SMALL,
  type Tile,
  TILES,
} from "../src/ops/linear.ts";
import type { Prec } from "./matmul_cases.ts";

/**
 * Candidates of a class, in priority order (the class default first). Run 1 on the H200 kept:
 * f32 flat arrays and the 128×128 16x8-a-thread BK 8 tile; f16 BK 16 (BK 32 lost everywhere).
 * New here: the f16 swap form (no splat), chunks of 32-64 products, 16-byte f16 workgroup loads
 * (h8), f32 sums in workgroup memory (wacc) with 16x8 outputs a thread.
 */
export function candidates(cls: ShapeClass, prec: Prec): [string, Choice][] {
  const big = TILES.big, wide = TILES.wide, small = TILES.small, mid = TILES.mid;
  const t = (x: Tile): Choice => ({ tile: x });
  const def = DEFAULTS[prec][cls];
  const list: [string, Choice][] = [["default", def]];
  const large = cls === "fwd" || cls === "dx" || cls === "dw";
  // 128×128 block, 16x8 outputs a thread; 128×64 with 16x8 over 64 threads.
  const sq8: Tile = { rg: 4, cg: 2, wx: 16, wy: 8, bk: 8 };
  const t64: Tile = { rg: 4, cg: 2, wx: 8, wy: 8, bk: 8 };
  const swap: Tile = { ...big, form: "swap" };
  const swap64: Tile = { ...t64, bk: 16, form: "swap", wacc: true, h8: true, chunk: 32 };
  if (prec === "f32" && large) {
    if (cls !== "dx") {
      list.push(
        ["128² 16x8 bk8 flat", t({ ...sq8, flat: true })],
        ["128² 16x8 bk8 flat blocks", t({ ...sq8, flat: true, blocks: true })],
        ["big flat blocks", t({ ...big, flat: true, blocks: true })],
        ["128² 16x8 bk8 sep", t({ ...sq8, sep: true })],
        ["128² 16x8 bk8 sep blocks", t({ ...sq8, sep: true, blocks: true })],
        ["big sep blocks", t({ ...big, sep: true, blocks: true })],
        ["128² 16x8 bk8", t(sq8)],
        ["128x64 64t 16x8 bk8 flat", t({ ...t64, flat: true })],
        ["128² 16x8 bk16 flat", t({ ...sq8, bk: 16, flat: true })],
      );
    } else {
      list.push(
        ["128² 16x8 bk8 flat", t({ ...sq8, flat: true })],
        ["128² 16x8 bk8 flat blocks", t({ ...sq8, flat: true, blocks: true })],
        ["wide flat blocks", t({ ...wide, flat: true, blocks: true })],
        ["128² 16x8 bk8 sep blocks", t({ ...sq8, sep: true, blocks: true })],
        ["wide sep blocks", t({ ...wide, sep: true, blocks: true })],
        ["128² 16x8 bk8", t(sq8)],
        ["wide wtx8 flat", t({ ...wide, wtx: 8, flat: true })],
        ["128x64 64t 16x8 bk8 flat", t({ ...t64, flat: true })],
      );
    }
  } else if (prec === "f16" && large) {
    list.push(
      ["swap bk16", t(swap)],
      ["swap blocks", t({ ...swap, blocks: true })],
      ["swap sep blocks", t({ ...swap, sep: true, blocks: true })],
      ["swap flat blocks", t({ ...swap, flat: true, blocks: true })],
      ["splat bk16", t(big)],
      ["pair bk16", t({ ...big, form: "pair" })],
      ["swap h8", t({ ...swap, h8: true })],
      ["swap c32", t({ ...swap, chunk: 32 })],
      ["swap blocks h8 c32", t({ ...swap, blocks: true, h8: true, chunk: 32 })],
      ["swap flat", t({ ...swap, flat: true })],
      ["swap wacc c32", t({ ...swap, wacc: true, chunk: 32 })],
      ["swap 128x64 64t 16x8 wacc h8 c32", t(swap64)],
      ["splat flat", t({ ...big, flat: true })],
      ["swap sep blocks h8 c32", t({ ...swap, sep: true, blocks: true, h8: true, chunk: 32 })],
    );
    if (cls === "fwd") list.push(["swap c64", t({ ...swap, chunk: 64 })]);
  } else if (cls === "splitk") {
    const s = (x: Tile, target = SPLIT_LONG.target): Choice => ({
      tile: x,
      split: { ...SPLIT_LONG, target },
    });
    if (prec === "f32") {
      list.push(
        ["128² 256t flat", s({ rg: 2, cg: 2, wx: 16, wy: 16, bk: 8, flat: true })],
        ["128² 16x8 bk8 flat", s({ ...sq8, flat: true })],
        ["big sep", s({ ...big, sep: true })],
        ["128² 16x8 bk8 sep", s({ ...sq8, sep: true })],
        ["big flat ×2112", s({ ...big, flat: true }, 2112)],
        ["128x64 64t 16x8 bk8 flat", s({ ...t64, flat: true })],
      );
    } else {
      list.push(
        ["splat flat", s({ ...big, flat: true })],
        ["swap bk16", s(swap)],
        ["swap sep", s({ ...swap, sep: true })],
        ["swap flat", s({ ...swap, flat: true })],
        ["swap c32", s({ ...swap, chunk: 32 })],
        ["swap h8", s({ ...swap, h8: true })],
        ["swap wacc c32", s({ ...swap, wacc: true, chunk: 32 })],
        ["swap 128x64 64t 16x8 wacc h8 c32", s(swap64)],
        ["pair bk16", s({ ...big, form: "pair" })],
      );
    }
  } else if (cls === "small") {
    const s = (x: Tile, target: number): Choice => ({ tile: x, split: { ...SPLIT_SMALL, target } });
    list.push(
      ["×768", s(small, 768)],
      ["mid bk16 ×768", s({ ...mid, bk: 16 }, 768)],
      ["mid ×384", s(mid, 384)],
    );
    if (prec === "f16") list.push(["swap ×768", s({ ...small, form: "swap" }, 768)]);
  } else if (cls === "narrowQ" || cls === "narrowR") {
    const s = (x: Tile): Choice => ({ tile: x, split: SPLIT_SMALL });
    const q = cls === "narrowQ";
    list.push(
      ["flat", s({ ...def.tile, flat: true })],
      [
        q ? "4x256 64t" : "256x4 64t",
        s(q ? { rg: 1, cg: 1, wx: 1, wy: 64, bk: 16 } : { rg: 1, cg: 1, wx: 64, wy: 1, bk: 16 }),
      ],
    );
  } else if (cls === "thin") {
    list.push(["big bk4", t({ ...big, bk: 4 })], ["mid bk4", t({ ...mid, bk: 4 })]);
  }
  return list;
}

/** A candidate as the options of the linear ops (no split-K unless it has one). */
export const optsOf = (ch: Choice): LinearOptions => ({
  tile: ch.tile,
  split: ch.split,
  splits: ch.split ? undefined : 1,
  swizzle: ch.swizzle,
});
