/**
 * Progress lines: on a terminal one line redrawn in place; otherwise (a log file, a pipe, CI) one
 * whole line per update, at most about one a second, and always the last.
 */

export class Progress {
  private readonly tty: boolean;
  private open = false;
  private last = -Infinity;
  private readonly enc = new TextEncoder();

  constructor(private readonly minIntervalMs = 1000, tty = Deno.stdout.isTerminal()) {
    this.tty = tty;
  }

  /** Show `line` as the current progress; `final`: the last update (always printed). */
  update(line: string, final = false): void {
    const now = performance.now();
    if (this.tty) {
      Deno.stdout.writeSync(this.enc.encode(`\r${line}\x1b[K`));
      this.open = true;
      if (final) this.end();
      return;
    }
    if (!final && now - this.last < this.minIntervalMs) return;
    this.last = now;
    console.log(line);
  }

  /** End the in-place line (terminal) so the next output starts on a new line. */
  end(): void {
    if (this.open) Deno.stdout.writeSync(this.enc.encode("\n"));
    this.open = false;
  }

  /** Print a whole line, ending the progress line first. */
  log(line: string): void {
    this.end();
    console.log(line);
  }
}
