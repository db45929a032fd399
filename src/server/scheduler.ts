import { BridgeError } from '../errors.ts';

export interface SchedulerOptions {
  /** Inference calls running at once. */
  readonly concurrency: number;
  /** Calls one client may have queued or running; more is `busy`. */
  readonly maxPerClient: number;
  /** Calls waiting across all clients; more is `busy`. */
  readonly maxQueued: number;
}

interface Task {
  readonly client: string;
  readonly run: () => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs CPU-heavy engine calls a few at a time, taking turns between clients (round robin),
 * so that one client with a long queue cannot starve another that sends one request.
 */
export class FairScheduler {
  readonly #options: SchedulerOptions;
  /** Clients with waiting tasks; Map iteration order is the round-robin order. */
  readonly #waiting = new Map<string, Task[]>();
  readonly #perClient = new Map<string, number>();
  #queued = 0;
  #running = 0;
  #idleWaiters: (() => void)[] = [];

  constructor(options: SchedulerOptions) {
    this.#options = options;
  }

  get queued(): number {
    return this.#queued;
  }

  get running(): number {
    return this.#running;
  }

  /** Queues `run` for `client`; throws `busy` at once when a limit is reached. */
  submit<T>(client: string, run: () => Promise<T>): Promise<T> {
    const mine = this.#perClient.get(client) ?? 0;
    if (mine >= this.#options.maxPerClient) {
      throw new BridgeError('busy', `this client already has ${mine} requests queued or running (limit ${this.#options.maxPerClient}); wait for a reply first`);
    }
    if (this.#queued >= this.#options.maxQueued) {
      throw new BridgeError('busy', `the server has ${this.#queued} requests waiting (limit ${this.#options.maxQueued}); try again shortly`);
    }
    return new Promise<T>((resolve, reject) => {
      const task: Task = { client, run, resolve: resolve as (value: unknown) => void, reject };
      const queue = this.#waiting.get(client);
      if (queue === undefined) this.#waiting.set(client, [task]);
      else queue.push(task);
      this.#perClient.set(client, mine + 1);
      this.#queued++;
      this.#pump();
    });
  }

  /** Drops a client's waiting tasks (it went away, nobody would read the answers); running ones finish. */
  cancelClient(client: string, reason: BridgeError): void {
    const queue = this.#waiting.get(client);
    if (queue === undefined) return;
    this.#waiting.delete(client);
    this.#queued -= queue.length;
    this.#release(client, queue.length);
    for (const task of queue) task.reject(reason);
  }

  /** Rejects everything waiting and resolves once running tasks are done. */
  async drain(reason: BridgeError): Promise<void> {
    for (const client of [...this.#waiting.keys()]) this.cancelClient(client, reason);
    if (this.#running === 0) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  #release(client: string, count: number): void {
    const left = (this.#perClient.get(client) ?? 0) - count;
    if (left > 0) this.#perClient.set(client, left);
    else this.#perClient.delete(client);
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency) {
      const next = this.#waiting.entries().next();
      if (next.done) return;
      const [client, queue] = next.value;
      const task = queue.shift() as Task;
      // Re-inserting moves the client to the back of the round.
      this.#waiting.delete(client);
      if (queue.length > 0) this.#waiting.set(client, queue);
      this.#queued--;
      this.#running++;
      void this.#execute(task);
    }
  }

  async #execute(task: Task): Promise<void> {
    try {
      task.resolve(await task.run());
    } catch (error) {
      task.reject(error);
    } finally {
      this.#running--;
      this.#release(task.client, 1);
      this.#pump();
      if (this.#running === 0 && this.#queued === 0) {
        for (const wake of this.#idleWaiters.splice(0)) wake();
      }
    }
  }
}
