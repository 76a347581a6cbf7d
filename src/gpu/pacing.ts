/**
 * How far a training loop runs ahead of the GPU. Deno's onSubmittedWorkDone (and mapAsync) block
 * the calling thread until the queue is empty, and the promise settles ~11 ms later: a wait every
 * step leaves the GPU idle for the next step's host work plus that latency (the flow trainer's
 * wall clock ran ~7% over its GPU time that way). Waiting once per STEPS_PER_WAIT submitted steps
 * bounds the queue and pays that cost once per 16 steps.
 */
export const STEPS_PER_WAIT = 16;

/** Counts submitted steps; `submitted()` waits for the GPU every STEPS_PER_WAIT of them. */
export class QueuePacer {
  private since = 0;
  constructor(private readonly device: GPUDevice) {}

  async submitted(): Promise<void> {
    if (++this.since < STEPS_PER_WAIT) return;
    this.since = 0;
    await this.device.queue.onSubmittedWorkDone();
  }
}
