/**
 * Parity with PyTorch: tests/fixtures/dit_parity.safetensors was written by
 * `python3 scripts/pytorch_dit.py fixture` (DiT models.py run in float64 with random non-zero
 * weights everywhere). The float64 reference must reproduce its output and every gradient.
 *
 * Fixture: config metadata (image 12, C 3, p 2, D 48, heads 3, depth 2, K 5, t_scale 1000);
 * weights under their DiT names; in.x [2,3,12,12], in.t [2], in.y [2] (labels as f32; the second
 * is the null label 5), in.dout [2,3,12,12]; out.v [2,3,12,12]; grad.<name> of Σ v·in.dout for
 * every trainable parameter. All F32 (computed in float64 from the f32-rounded values).
 */
import { decodeSafetensors } from "../src/io/safetensors.ts";
import { configFromMetadata, loadModelState } from "../src/io/checkpoint.ts";
import { paramLayout, paramSpecs, posEmbed } from "../src/model/params.ts";
import { assertClose } from "./harness.ts";
import { ditBackwardRef, ditForwardRef, type Params } from "./reference/dit.ts";

const FIXTURE = new URL("./fixtures/dit_parity.safetensors", import.meta.url);

Deno.test("float64 reference matches PyTorch DiT (output and every gradient)", async () => {
  const { tensors, metadata } = decodeSafetensors(await Deno.readFile(FIXTURE));
  const cfg = configFromMetadata(metadata);
  const flat = loadModelState(cfg, tensors, "", ["ema.", "opt.", "in.", "out.", "grad."]);
  const layout = paramLayout(cfg);
  const params: Params = new Map();
  for (const s of layout.slots) {
    params.set(s.name, Float64Array.from(flat.subarray(s.offset, s.offset + s.length)));
  }
  // numpy's pos_embed vs ours: same f32 values (up to a last-bit difference of sin/cos)
  assertClose("pos_embed", posEmbed(cfg), params.get("pos_embed")!, 1e-7);

  const io = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new Error(`fixture lacks ${n}`);
    return Float64Array.from(t.data);
  };
  const x = io("in.x"), t = io("in.t"), dout = io("in.dout");
  const y = Int32Array.from(io("in.y"), Math.round);
  const { out, cache } = ditForwardRef(cfg, params, x, t, y);
  const errs = [`out.v ${assertClose("out.v", out, io("out.v")).toExponential(2)}`];
  const grads = ditBackwardRef(cfg, params, cache, dout);
  const trainable = paramSpecs(cfg).filter((s) => s.trainable).map((s) => s.name);
  const stored = [...tensors.keys()].filter((n) => n.startsWith("grad.")).map((n) => n.slice(5));
  if (JSON.stringify(stored.sort()) !== JSON.stringify([...trainable].sort())) {
    throw new Error(`fixture gradients ${stored} != trainable parameters ${trainable}`);
  }
  let worst = 0;
  for (const name of trainable) {
    worst = Math.max(worst, assertClose(`grad.${name}`, grads.get(name)!, io(`grad.${name}`)));
  }
  errs.push(`worst gradient ${worst.toExponential(2)}`);
  console.log(`  relative error vs PyTorch: ${errs.join(", ")}`);
});
