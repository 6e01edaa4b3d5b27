import { formatBytes } from '../core/range-plan.ts';

/** Progress on a terminal (one redrawn line on stderr); nothing otherwise. */
export class ProgressBar {
  readonly #stream: NodeJS.WriteStream;
  readonly #started = Date.now();
  #lastDraw = 0;
  #drawn = false;

  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream;
  }

  update(label: string, done: number, total: number): void {
    const now = Date.now();
    if (now - this.#lastDraw < 100 && done < total) return;
    this.#lastDraw = now;
    const width = 30;
    const fraction = total === 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(fraction * width);
    const seconds = Math.max(0.001, (now - this.#started) / 1000);
    const rate = done / seconds / 1024 / 1024;
    const columns = this.#stream.columns ?? 100;
    const text = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${rate.toFixed(1)} MiB/s ${label}`;
    this.#stream.write(`\r${text.slice(0, columns - 1).padEnd(columns - 1)}`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
  }
}

/** Progress of a count (messages, objects) on a terminal: one redrawn line on stderr. */
export class CountProgress {
  readonly #stream: NodeJS.WriteStream;
  #lastDraw = 0;
  #drawn = false;

  constructor(stream: NodeJS.WriteStream) {
    this.#stream = stream;
  }

  update(label: string, done: number, total: number): void {
    if (!this.#stream.isTTY) return;
    const now = Date.now();
    if (now - this.#lastDraw < 100 && done < total) return;
    this.#lastDraw = now;
    const width = 30;
    const fraction = total === 0 ? 1 : Math.min(1, done / total);
    const filled = Math.round(fraction * width);
    const columns = this.#stream.columns ?? 100;
    const text = `[${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${done}/${total} ${label}`;
    this.#stream.write(`\r${text.slice(0, columns - 1).padEnd(columns - 1)}`);
    this.#drawn = true;
  }

  done(): void {
    if (this.#drawn) this.#stream.write('\n');
    this.#drawn = false;
  }
}
