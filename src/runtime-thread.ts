import { Worker } from 'node:worker_threads';
import { BridgeError } from './errors.ts';

/** Messages to the runtime thread (src/runtime-worker.ts). */
export type ThreadRequest =
  | { readonly id: number; readonly type: 'load'; readonly onnx: Uint8Array; readonly device: string; readonly threads: number }
  | { readonly id: number; readonly type: 'run'; readonly session: number; readonly data: Float32Array; readonly shape: readonly number[] }
  | { readonly id: number; readonly type: 'release'; readonly session: number };

/** Its answers: `session` for a load, `data` and `shape` for a run. */
export type ThreadReply =
  | { readonly id: number; readonly ok: true; readonly session?: number; readonly data?: Float32Array; readonly shape?: number[] }
  | { readonly id: number; readonly ok: false; readonly message: string };

type Payload<T> = T extends unknown ? Omit<T, 'id'> : never;

interface Waiting {
  readonly worker: Worker;
  readonly resolve: (reply: ThreadReply & { ok: true }) => void;
  readonly reject: (error: Error) => void;
}

/**
 * The thread onnxruntime runs in, seen from the main thread: requests and their answers. Should
 * the thread die (a native crash in a session), what waited on it fails with `internal`, and the
 * next request starts a new thread; `generation` tells callers their sessions are gone.
 */
export class RuntimeThread {
  #worker: Worker | undefined;
  #generation = 0;
  #nextId = 1;
  readonly #waiting = new Map<number, Waiting>();

  /** Counts the threads started so far; sessions belong to the one they were made in. */
  get generation(): number {
    return this.#generation;
  }

  /** Starts the thread now (it is otherwise started on first use), so `generation` is current. */
  start(): void {
    this.#thread();
  }

  request<T extends ThreadRequest>(request: Payload<T>, transfer: ArrayBuffer[] = []): Promise<ThreadReply & { ok: true }> {
    const worker = this.#thread();
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { worker, resolve, reject });
      // Held open only while something waits on it, so a command that is done can exit.
      worker.ref();
      worker.postMessage({ ...request, id }, transfer);
    });
  }

  /** Ends the thread; what waits on it fails. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    if (worker !== undefined) await worker.terminate();
  }

  #thread(): Worker {
    if (this.#worker !== undefined) return this.#worker;
    const worker = new Worker(new URL('./runtime-worker-entry.js', import.meta.url));
    this.#worker = worker;
    this.#generation++;
    worker.unref();
    worker.on('message', (reply: ThreadReply) => {
      const waiting = this.#waiting.get(reply.id);
      if (waiting === undefined) return;
      this.#waiting.delete(reply.id);
      if (![...this.#waiting.values()].some((w) => w.worker === worker)) worker.unref();
      if (reply.ok) waiting.resolve(reply);
      else waiting.reject(new BridgeError('internal', reply.message));
    });
    const lost = (why: string): void => {
      if (this.#worker === worker) this.#worker = undefined;
      for (const [id, w] of this.#waiting) {
        if (w.worker !== worker) continue;
        this.#waiting.delete(id);
        w.reject(new BridgeError('internal', `the runtime thread ${why}; the next request starts a new one`));
      }
    };
    worker.on('error', (error) => lost(`failed: ${error.message}`));
    worker.on('exit', (code) => lost(`exited with code ${code}`));
    return worker;
  }
}
