import os from 'node:os';

/** What a user (Ctrl-C) or a service manager sends to stop latent-bridge. */
const STOP_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

export type StopSignal = (typeof STOP_SIGNALS)[number];

/**
 * Calls `onStop` on the first SIGINT or SIGTERM and stops listening, so that a second one ends the
 * process at once. Returns a function that stops listening.
 */
export function onStopSignal(onStop: (signal: StopSignal) => void): () => void {
  const stopListening = (): void => {
    for (const signal of STOP_SIGNALS) process.off(signal, stop);
  };
  const stop = (signal: StopSignal): void => {
    stopListening();
    onStop(signal);
  };
  for (const signal of STOP_SIGNALS) process.on(signal, stop);
  return stopListening;
}

/** The exit status a shell reports for a process that `signal` ended: 128 + its number. */
export function signalExitCode(signal: StopSignal): number {
  return 128 + os.constants.signals[signal];
}
