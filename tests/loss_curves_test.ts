/** scripts/loss_curves.ts: one colour per run, each curve at its loss level on the log axis. */
// deno-lint-ignore no-import-prefix -- same specifier as src/io/png.ts
import { Image } from "npm:imagescript@1.3.1";
import { lossCurvesPng } from "../scripts/loss_curves.ts";
import { assert } from "./task_run.ts";

Deno.test("loss curves script: one colour per run, each at its loss level", async () => {
  const levels = [1, 0.5, 0.25];
  const runs = levels.map((l, r) => ({
    label: `run ${r}`,
    points: Array.from({ length: 100 }, (_, i) => [i + 1, l] as [number, number]),
  }));
  const dec = await Image.decode(await lossCurvesPng(runs));
  const colours = [[31, 119, 180], [255, 127, 14], [44, 160, 44]];
  const ys = colours.map((c) => {
    const hits: number[] = [];
    for (let y = 40; y < dec.height; y++) {
      for (let x = 0; x < dec.width; x++) {
        const o = (y * dec.width + x) * 4;
        if (c.every((v, i) => dec.bitmap[o + i] === v)) hits.push(y);
      }
    }
    assert(hits.length > 200, `colour ${c}: ${hits.length} pixels`);
    return hits.reduce((a, b) => a + b, 0) / hits.length;
  });
  // log axis: equal ratios, equal spacing; higher loss higher up
  assert(ys[0] < ys[1] && ys[1] < ys[2], `curve rows ${ys}`);
  assert(Math.abs((ys[1] - ys[0]) - (ys[2] - ys[1])) < 2, `log spacing ${ys}`);
});
