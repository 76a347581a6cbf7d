/**
 * The trainer's allocation for `deno task train`: every buffer of the run is created inside a
 * WebGPU `out-of-memory` error scope; when the device refuses (the dry run of the limits passed,
 * but the memory itself ran out), the run stops with one line naming the need and the flags that
 * need less, and a run directory made for this run is removed (nothing is left behind).
 */
import { allocationFailure, type Gpu, type RunShape, type Trainer } from "../mod.ts";
import { UsageError } from "./cli.ts";
import type { RunDir } from "./run_dir.ts";

export async function allocateTrainer(
  gpu: Gpu,
  run: RunShape,
  runDir: RunDir,
  make: () => Promise<Trainer>,
): Promise<Trainer> {
  gpu.device.pushErrorScope("out-of-memory");
  let trainer: Trainer | undefined, thrown: unknown;
  try {
    trainer = await make();
  } catch (e) {
    thrown = e;
  }
  const oom = await gpu.device.popErrorScope();
  if (!oom && trainer) return trainer;
  if (runDir.created) {
    runDir.release();
    await Deno.remove(runDir.dir, { recursive: true }).catch(() => {});
  }
  if (!oom) throw thrown;
  throw new UsageError(allocationFailure(gpu, run, oom.message));
}
