import { formatBytes } from '../console-log.ts';
import cliProgress from 'cli-progress';

/** One file transfer as the store starts it. */
export interface TransferStart {
  readonly model: string;
  readonly fileName: string;
  /** Size of the whole file in bytes. */
  readonly total: number;
  /** Bytes already on disk from an interrupted earlier transfer (0 for a fresh one). */
  readonly resumedFrom: number;
}

export interface TransferProgress {
  advance(bytes: number): void;
  end(outcome: 'done' | 'failed'): void;
}

/** Where download progress goes: bars on a terminal, plain lines in logs, nothing in tests. */
export interface ProgressReporter {
  start(transfer: TransferStart): TransferProgress;
}

export const silentProgress: ProgressReporter = {
  start: () => ({ advance: () => undefined, end: () => undefined }),
};

/** A cli-progress bar per file, all files of one run in one block. */
export function barProgress(stream: NodeJS.WriteStream): ProgressReporter {
  let bars: cliProgress.MultiBar | undefined;
  let running = 0;
  return {
    start(transfer) {
      bars ??= new cliProgress.MultiBar(
        {
          stream,
          hideCursor: true,
          format: ' {name} {bar} {percentage}% | {done}/{size}',
        },
        cliProgress.Presets.shades_classic,
      );
      running += 1;
      const bar = bars.create(transfer.total, transfer.resumedFrom, {
        name: transfer.fileName,
        done: formatBytes(transfer.resumedFrom),
        size: formatBytes(transfer.total),
      });
      let value = transfer.resumedFrom;
      return {
        advance(bytes) {
          value += bytes;
          bar.update(value, { done: formatBytes(value) });
        },
        end(outcome) {
          bar.update(value, { name: outcome === 'done' ? transfer.fileName : `${transfer.fileName} (failed)` });
          running -= 1;
          if (running === 0 && bars !== undefined) {
            bars.stop();
            bars = undefined;
          }
        },
      };
    },
  };
}

/** Plain lines (start, every quarter, end) for logs and pipes, where redrawn bars would be noise. */
export function lineProgress(stream: NodeJS.WritableStream): ProgressReporter {
  return {
    start(transfer) {
      const resumed = transfer.resumedFrom > 0 ? `, resuming at ${formatBytes(transfer.resumedFrom)}` : '';
      stream.write(`downloading ${transfer.fileName} (${formatBytes(transfer.total)}${resumed})\n`);
      let value = transfer.resumedFrom;
      let reported = Math.floor((value / Math.max(transfer.total, 1)) * 4);
      return {
        advance(bytes) {
          value += bytes;
          const quarter = Math.floor((value / Math.max(transfer.total, 1)) * 4);
          if (quarter > reported && quarter < 4) {
            reported = quarter;
            stream.write(`  ${transfer.fileName}: ${quarter * 25}% (${formatBytes(value)})\n`);
          }
        },
        end(outcome) {
          stream.write(`  ${transfer.fileName}: ${outcome === 'done' ? 'done' : `failed at ${formatBytes(value)}`}\n`);
        },
      };
    },
  };
}

/** Bars when a person watches the stream, lines otherwise. */
export function progressFor(stream: NodeJS.WriteStream): ProgressReporter {
  return stream.isTTY ? barProgress(stream) : lineProgress(stream);
}
