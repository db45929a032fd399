import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface, type Interface } from 'node:readline';

/** Debian's interpreter: the pyenv one first on PATH here lacks Debian's python3-torch. */
export const PYTHON = process.env.LATENT_BRIDGE_PYTHON ?? '/usr/bin/python3';

/** A long-lived Python process answering one JSON line per JSON line sent, for interleaved timing. */
export class PythonWorker {
  readonly #child: ChildProcessWithoutNullStreams;
  readonly #lines: AsyncIterator<string>;
  readonly #reader: Interface;

  constructor(script: string, args: string[] = []) {
    this.#child = spawn(PYTHON, [script, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr.pipe(process.stderr);
    this.#reader = createInterface({ input: this.#child.stdout });
    this.#lines = this.#reader[Symbol.asyncIterator]();
  }

  async request<T>(message: unknown): Promise<T> {
    this.#child.stdin.write(`${JSON.stringify(message)}\n`);
    const line = await this.#lines.next();
    if (line.done) throw new Error(`the Python worker exited (code ${this.#child.exitCode})`);
    return JSON.parse(line.value) as T;
  }

  close(): void {
    this.#reader.close();
    this.#child.stdin.end();
  }
}
