/** How much the sidecar says on its console (stderr): `--quiet`, the default, `--verbose`. */
export const LOG_LEVELS = ['quiet', 'normal', 'verbose'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What the sidecar says, by how much a user wants to hear. */
export interface ConsoleLog {
  /** Problems (a dropped peer, a failed decode, an internal error): said at every level. */
  warn(line: string): void;
  /** What it does: networks loaded and downloaded, clients connecting, leaving or refused. */
  info(line: string): void;
  /** Each request with its outcome and time: `--verbose` only. */
  detail(line: string): void;
}

/** A log that drops what its level does not want, and writes the rest as lines. */
export function consoleLog(level: LogLevel, write: (line: string) => void = (line) => console.error(line)): ConsoleLog {
  const ignore = (): void => undefined;
  return {
    warn: write,
    info: level === 'quiet' ? ignore : write,
    detail: level === 'verbose' ? write : ignore,
  };
}

/** Says nothing: for tests and embedders that watch the sidecar otherwise. */
export const SILENT_LOG: ConsoleLog = consoleLog('quiet', () => undefined);

/** A size as the console says it: `512 B`, `2.3 MiB`. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
}
