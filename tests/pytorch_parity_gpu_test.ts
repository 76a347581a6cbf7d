/**
 * The GPU model against the committed PyTorch DiT fixture (float64, C=3 so a wrong unpatchify
 * order cannot pass): output and every parameter gradient of Σ dout·v.
 */
import { decodeSafetensors } from "../src/io/safetensors.ts";
import { configFromMetadata, loadModelState } from "../src/io/checkpoint.ts";
import { paramSpecs } from "../src/model/params.ts";
import { Model } from "../src/model/model.ts";
import { FlatBuffer } from "../src/gpu/arena.ts";
import { assertClose, kernels } from "./harness.ts";

Deno.test("GPU DiT matches PyTorch DiT (fixture): output and all gradients", async () => {
  const bytes = await Deno.readFile(new URL("./fixtures/dit_parity.safetensors", import.meta.url));
  const { tensors, metadata } = decodeSafetensors(bytes);
  const cfg = configFromMetadata(metadata);
  const flat = loadModelState(cfg, tensors, "", ["in.", "out.", "grad.", "ema.", "opt."]);
  const get = (n: string) => {
    const t = tensors.get(n);
    if (!t) throw new Error(`fixture lacks ${n}`);
    return t.data;
  };
  const k = await kernels();
  const model = new Model(k, cfg, { weights: flat });
  const x = get("in.x"), t = get("in.t"), y = get("in.y"), dout = get("in.dout");
  const graph = model.graph(t.length);
  k.write(graph.x, x);
  k.write(graph.t, t);
  k.write(graph.y, Uint32Array.from(y));
  k.fill(graph.out, NaN);
  await k.run(graph.forward());
  const e = assertClose("PyTorch out.v", await k.read(graph.out), get("out.v"));
  const d = k.tensor([dout.length], "dout");
  k.write(d, dout);
  const grads = new FlatBuffer(k.device, model.layout, "grads");
  k.fill(grads.all(), NaN);
  await k.run(graph.backward(d, grads));
  const g = await k.read(grads.all());
  let worst = 0;
  for (const s of paramSpecs(cfg).filter((s) => s.trainable)) {
    const slot = model.layout.get(s.name);
    const got = g.subarray(slot.offset, slot.offset + slot.length);
    worst = Math.max(worst, assertClose(`PyTorch grad.${s.name}`, got, get(`grad.${s.name}`)));
  }
  console.log(`  out.v ${e.toExponential(2)}, worst gradient ${worst.toExponential(2)}`);
});
