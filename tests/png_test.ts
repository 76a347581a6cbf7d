/**
 * The PNG encoder against imagescript's decoder (an independent implementation) and the CRC-32
 * check value; identical pixels give identical bytes. The plots read back like a reader would:
 * their tick numbers (matched against the font's glyphs) lie on log-scale or linear axes, and the
 * drawn curve (loss) or markers (FD against NFE) sit where those axes put the data.
 */
import { crc32, encodePng, linePlotPng, lossCurvePng } from "../mod.ts";
import { GLYPHS } from "../src/io/bitmap_font.ts";
// deno-lint-ignore no-import-prefix -- same specifier as src/io/datasets.ts
import { Image } from "npm:imagescript@1.3.1";
import { Rng, TEST_SEED } from "./reference/random.ts";
import { assert } from "./task_run.ts";

Deno.test("crc32: the CRC-32/ISO-HDLC check value", () => {
  const v = crc32(new TextEncoder().encode("123456789"));
  assert(v === 0xcbf43926, `crc32("123456789") = ${v.toString(16)}`);
});

Deno.test("encodePng: grey, RGB and RGBA round-trip through imagescript; same bytes each time", async () => {
  const rng = new Rng(TEST_SEED ^ 0x9e6);
  for (const [w, h, c] of [[1, 1, 1], [7, 5, 1], [33, 17, 3], [16, 9, 4]] as const) {
    const px = Uint8Array.from(rng.normals(w * h * c, 1), (x) => Math.floor((x + 4) * 32) & 255);
    const png = await encodePng(px, w, h, c);
    const again = await encodePng(px, w, h, c);
    assert(png.length === again.length && png.every((b, i) => b === again[i]), "other bytes");
    const img = await Image.decode(png);
    assert(
      img.width === w && img.height === h,
      `${w}×${h}×${c}: decoded ${img.width}×${img.height}`,
    );
    for (let i = 0; i < w * h; i++) {
      const want = c === 1
        ? [px[i], px[i], px[i], 255]
        : [...px.subarray(i * c, i * c + 3), c === 4 ? px[i * c + 3] : 255];
      const got = [...img.bitmap.subarray(i * 4, i * 4 + 4)];
      assert(got.join() === want.join(), `${w}×${h}×${c} pixel ${i}: ${got}, want ${want}`);
    }
  }
});

type Px = { width: number; height: number; at(x: number, y: number): [number, number, number] };

const isBlack = (p: number[]) => p[0] < 80 && p[1] < 80 && p[2] < 80;

/** Read text drawn at scale 2 in the box [x0, x1) × [y0, y1) by matching glyph bitmaps. */
function readText(img: Px, x0: number, x1: number, y0: number, y1: number): string {
  let top = Infinity;
  for (let y = y0; y < y1; y++) {
    for (let x = x0; x < x1; x++) if (isBlack(img.at(x, y))) top = Math.min(top, y);
  }
  if (top === Infinity) return "";
  const lit = (x: number) =>
    Array.from({ length: 16 }, (_, r) => top + r).some((y) => y < y1 && isBlack(img.at(x, y)));
  let out = "";
  for (let x = x0; x < x1;) {
    if (!lit(x)) {
      x++;
      continue;
    }
    let end = x;
    while (end < x1 && lit(end)) end++;
    const cols = (end - x) / 2;
    const hit = Object.entries(GLYPHS).find(([, g]) => {
      const used = [0, 1, 2, 3, 4].filter((c) => g.some((row) => row & (0x10 >> c)));
      if (!used.length || used.length !== cols) return false;
      for (let r = 0; r < 8; r++) {
        for (let c = 0; c < cols; c++) {
          const bit = r < g.length && (g[r] & (0x10 >> (used[0] + c))) !== 0;
          if (bit !== isBlack(img.at(x + 2 * c, top + 2 * r))) return false;
        }
      }
      return true;
    });
    out += hit ? hit[0] : "?";
    x = end;
  }
  return out;
}

/** Least-squares line a + b·t through (t, u) pairs, and its worst residual. */
function fit(pairs: [number, number][]): { a: number; b: number; worst: number } {
  const n = pairs.length, mt = pairs.reduce((s, p) => s + p[0], 0) / n;
  const mu = pairs.reduce((s, p) => s + p[1], 0) / n;
  const b = pairs.reduce((s, [t, u]) => s + (t - mt) * (u - mu), 0) /
    pairs.reduce((s, [t]) => s + (t - mt) ** 2, 0);
  const a = mu - b * mt;
  return { a, b, worst: Math.max(...pairs.map(([t, u]) => Math.abs(a + b * t - u))) };
}

/** A decoded PNG as pixels. */
async function decode(png: Uint8Array): Promise<Px> {
  const dec = await Image.decode(png);
  return {
    width: dec.width,
    height: dec.height,
    at: (x, y) =>
      [...dec.bitmap.subarray((y * dec.width + x) * 4, (y * dec.width + x) * 4 + 3)] as [
        number,
        number,
        number,
      ],
  };
}

/**
 * A plot's frame read back like a reader would: the axes (the longest black column and row), the
 * grid lines, the tick numbers at them, and least-squares maps value → pixel (in log10 of the
 * value on a log axis) that must fit every tick within a pixel.
 */
function readFrame(img: Px, log: { x: boolean; y: boolean }) {
  const W = img.width, H = img.height;
  const count = (n: number, f: (i: number) => boolean) =>
    Array.from({ length: n }, (_, i) => i).filter(f).length;
  const cols = Array.from({ length: W }, (_, x) => count(H, (y) => isBlack(img.at(x, y))));
  const rows = Array.from({ length: H }, (_, y) => count(W, (x) => isBlack(img.at(x, y))));
  const axisX = cols.indexOf(Math.max(...cols)), axisY = rows.indexOf(Math.max(...rows));
  // grid lines: light grey across most of the plot
  const grey = (p: number[]) => p[0] === 225 && p[1] === 225 && p[2] === 225;
  const plotW = W - axisX, plotH = axisY;
  const gridRows = Array.from({ length: axisY }, (_, y) => y)
    .filter((y) => count(plotW, (i) => grey(img.at(axisX + i, y))) > plotW / 3);
  const gridCols = Array.from({ length: W - axisX - 1 }, (_, i) => axisX + 1 + i)
    .filter((x) => count(plotH, (y) => grey(img.at(x, y))) > plotH / 3);
  // tick numbers: left of the y axis at each grid row, below the x axis at each grid column
  const yTicks = gridRows.map((y) => [y, Number(readText(img, 0, axisX - 6, y - 9, y + 9))]);
  const xTicks = gridCols.map((
    x,
  ) => [x, Number(readText(img, x - 40, x + 40, axisY + 6, axisY + 24))]);
  console.log(
    `  y ticks ${yTicks.map(([y, v]) => `${v}@${y}`)}; x ticks ${
      xTicks.map(([x, v]) => `${v}@${x}`)
    }`,
  );
  assert(yTicks.length >= 2 && yTicks.every(([, v]) => Number.isFinite(v)), `y ticks ${yTicks}`);
  assert(xTicks.length >= 3 && xTicks.every(([, v]) => Number.isFinite(v)), `x ticks ${xTicks}`);
  const t = (v: number, l: boolean) => l ? Math.log10(v) : v;
  const yMap = fit(yTicks.map(([y, v]) => [t(v, log.y), y]));
  const xMap = fit(xTicks.map(([x, v]) => [t(v, log.x), x]));
  assert(yMap.worst <= 1 && yMap.b < 0, `y ticks not evenly spaced: ${JSON.stringify(yMap)}`);
  assert(xMap.worst <= 1 && xMap.b > 0, `x ticks not evenly spaced: ${JSON.stringify(xMap)}`);
  let plotTop = 0;
  while (!isBlack(img.at(axisX, plotTop))) plotTop++; // the y axis starts at the plot's top
  return {
    axisX,
    axisY,
    plotTop,
    /** Pixel column of x, pixel row of y; and back. */
    X: (v: number) => xMap.a + xMap.b * t(v, log.x),
    Y: (v: number) => yMap.a + yMap.b * t(v, log.y),
    xOf: (px: number) => {
      const u = (px - xMap.a) / xMap.b;
      return log.x ? 10 ** u : u;
    },
  };
}

Deno.test("lossCurvePng: labelled log-scale y axis and linear x axis that place the curve", async () => {
  // loss = 2·10^(-s/100): two decades over 200 steps, a straight line on a log axis
  const loss = (s: number) => 2 * 10 ** (-s / 100);
  const pts = Array.from({ length: 200 }, (_, i) => [i + 1, loss(i + 1)] as [number, number]);
  const img = await decode(await lossCurvePng(pts));
  const W = img.width, H = img.height;
  const f = readFrame(img, { x: false, y: true });
  // the per-step curve (light blue) where those axes put the data, within 2 pixels
  let n = 0, worst = 0;
  for (let x = f.axisX + 1; x < W; x++) {
    for (let y = f.plotTop; y < f.axisY; y++) {
      const p = img.at(x, y);
      if (p[0] !== 174 || p[1] !== 199 || p[2] !== 232) continue;
      worst = Math.max(worst, Math.abs(f.Y(loss(f.xOf(x))) - y));
      n++;
    }
  }
  assert(n > 100 && worst <= 2, `curve: ${n} pixels, worst ${worst.toFixed(2)} px off`);
  // axis labels
  assert(readText(img, f.axisX, W, f.axisY + 24, H) === "step", "x axis label");
  assert(
    readText(img, 0, W / 2, 0, 24) === "loss(log)",
    `y axis label ${readText(img, 0, W / 2, 0, 24)}`,
  );
});

Deno.test("linePlotPng: log-scale x axis, markers where the axes put the points, legend", async () => {
  const rng = new Rng(TEST_SEED ^ 0x9e7);
  // FD against NFE for two solvers: random decreasing values; Euler at 10..200 NFE, Heun (2 NFE a
  // step) at 16..320, so no two markers share an x (a later series' marker would cover an earlier
  // one's where their random values met: seed 2 did)
  const nfes = [[10, 25, 50, 100, 200], [16, 40, 80, 160, 320]];
  const series = ["euler", "heun"].map((name, s) => {
    let fd = 30 + 20 * rng.uniform();
    const points = nfes[s].map((nfe) => {
      fd *= 0.5 + 0.3 * rng.uniform();
      return [nfe, fd + 1] as [number, number];
    });
    return { name, points };
  });
  const opts = { xLabel: "NFE", yLabel: "FD", logX: true, logY: false };
  const img = await decode(await linePlotPng(series, opts));
  const W = img.width, H = img.height;
  const f = readFrame(img, { x: true, y: false });
  const colours = [[31, 119, 180], [255, 127, 14]];
  series.forEach((s, i) => {
    for (const [x, y] of s.points) {
      // the 7×7 marker centred on the point, within a pixel
      const cx = Math.round(f.X(x)), cy = Math.round(f.Y(y));
      let hits = 0;
      for (let dy = -2; dy <= 2; dy++) {
        for (let dx = -2; dx <= 2; dx++) {
          if (img.at(cx + dx, cy + dy).join() === colours[i].join()) hits++;
        }
      }
      assert(hits >= 20, `${s.name} (${x}, ${y}): marker not at (${cx}, ${cy}) (${hits} px)`);
    }
  });
  assert(readText(img, f.axisX, W, f.axisY + 24, H) === "NFE(log)", "x axis label");
  const top = readText(img, 0, W, 0, 24);
  assert(top === "FDeulerheun", `top row "${top}"`);
});
