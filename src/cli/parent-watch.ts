/** How often the parent process is looked for; shutting down a second late is fine. */
const POLL_MS = 1_000;

/**
 * Resolves when the process that started this one has exited. A shell running `npm start`, or the
 * webui that started the sidecar, may die without passing a signal on; the orphan would then hold
 * the port until someone finds and kills it. An orphan is adopted by another process (init or a
 * subreaper), so a changed parent pid is the sign.
 */
export function parentExited(): Promise<string> {
  const parent = process.ppid;
  return new Promise((resolve) => {
    const timer = setInterval(() => {
      if (process.ppid !== parent) {
        clearInterval(timer);
        resolve(`the process that started latent-bridge (pid ${parent}) has exited`);
      }
    }, POLL_MS);
    timer.unref();
  });
}
