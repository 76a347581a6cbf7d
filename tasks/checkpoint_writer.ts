/**
 * A run's checkpoint writes (the training tasks share them): buffers with a non-finite value are
 * refused naming the last good checkpoint, files are written atomically, and `<out>/latest`
 * points at a flow run from its first checkpoint on (what `generate --checkpoint runs/latest`
 * samples; a VQ-VAE run leaves it alone).
 */
import { join } from "node:path";
import { writeFileAtomic } from "./files.ts";
import { linkLatest } from "./run_dir.ts";

export class CheckpointWriter {
  /** The newest checkpoint known to be good (the resumed one until this run writes one). */
  lastGood?: string;
  private linked = false;

  constructor(
    private readonly runDir: string,
    resumedFrom?: string,
    private readonly latest = true,
  ) {
    this.lastGood = resumedFrom;
  }

  /**
   * Write `checkpoints/<name>` from `encode()` after checking every buffer of `bufs` is finite;
   * returns its path.
   */
  async write(
    name: string,
    step: number,
    bufs: Record<string, Float32Array>,
    encode: () => Uint8Array,
  ): Promise<string> {
    for (const [which, arr] of Object.entries(bufs)) {
      if (!arr.every(Number.isFinite)) {
        throw new Error(
          `${which} has a non-finite value at step ${step}: not writing a checkpoint` +
            (this.lastGood ? `; the last good one is ${this.lastGood}` : ""),
        );
      }
    }
    const path = join(this.runDir, "checkpoints", name);
    await writeFileAtomic(path, encode());
    this.lastGood = path;
    if (this.latest && !this.linked) await linkLatest(this.runDir); // only runs with a checkpoint
    this.linked = true;
    return path;
  }

  /** Stop the run at a non-finite loss: the error names the last good checkpoint. */
  lossError(loss: number, step: number): Error {
    return new Error(
      `loss is ${loss} at step ${step}: stopping` +
        (this.lastGood
          ? `; the last good checkpoint is ${this.lastGood}`
          : " (no checkpoint was written)"),
    );
  }
}
