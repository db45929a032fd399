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

/** Work that runs only when no request waits (TAESD previews): a request waits at most for one of these. */
interface BackgroundTask {
  readonly run: () => Promise<unknown>;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/**
 * Runs CPU-heavy engine calls a few at a time, taking turns between clients (round robin),
 * so that one client with a long queue cannot starve another that sends one request. Background
 * work takes a slot only when no request is waiting for one.
 */
export class FairScheduler {
  readonly #options: SchedulerOptions;
  /** Clients with tasks ready to run; Map iteration order is the round-robin order. */
  readonly #waiting = new Map<string, Task[]>();
  /** Tasks still getting ready (loading their networks); they count as queued. */
  readonly #preparing = new Set<Task>();
  readonly #perClient = new Map<string, number>();
  /** Waiting background work; its callers bound how much they hand in. */
  readonly #background: BackgroundTask[] = [];
  #queued = 0;
  #running = 0;
  #draining = false;
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

  /**
   * Queues `run` for `client`, after `prepare` (loading the networks it needs, which may mean a
   * download) so that a slow preparation never holds a compute slot. Throws `busy` at once when
   * a limit is reached or the scheduler is draining; the task counts against the limits from
   * this call on, so requests waiting for a download cannot pile up.
   */
  submit<T>(client: string, run: () => Promise<T>, prepare?: () => Promise<void>): Promise<T> {
    if (this.#draining) throw new BridgeError('busy', 'the server is shutting down');
    const mine = this.#perClient.get(client) ?? 0;
    if (mine >= this.#options.maxPerClient) {
      throw new BridgeError('busy', `this client already has ${mine} requests queued or running (limit ${this.#options.maxPerClient}); wait for a reply first`);
    }
    if (this.#queued >= this.#options.maxQueued) {
      throw new BridgeError('busy', `the server has ${this.#queued} requests waiting (limit ${this.#options.maxQueued}); try again shortly`);
    }
    return new Promise<T>((resolve, reject) => {
      const task: Task = { client, run, resolve: resolve as (value: unknown) => void, reject };
      this.#perClient.set(client, mine + 1);
      this.#queued++;
      if (prepare === undefined) {
        this.#enqueue(task);
        return;
      }
      this.#preparing.add(task);
      prepare().then(
        () => {
          if (this.#preparing.delete(task)) this.#enqueue(task);
        },
        (error: unknown) => {
          if (this.#preparing.delete(task)) this.#drop([task], error);
        },
      );
    });
  }

  /**
   * Runs `run` in a slot no request is waiting for, after every request that is; a request that
   * comes later waits at most for the background work already running. Refused while draining.
   */
  submitBackground<T>(run: () => Promise<T>): Promise<T> {
    if (this.#draining) return Promise.reject(new BridgeError('busy', 'the server is shutting down'));
    return new Promise<T>((resolve, reject) => {
      this.#background.push({ run, resolve: resolve as (value: unknown) => void, reject });
      this.#pump();
    });
  }

  /** Background tasks waiting for a slot. */
  get backgroundWaiting(): number {
    return this.#background.length;
  }

  /** Drops a client's tasks that have not started (it went away, nobody would read the answers); running ones finish. */
  cancelClient(client: string, reason: BridgeError): void {
    const dropped = [...this.#preparing].filter((task) => task.client === client);
    for (const task of dropped) this.#preparing.delete(task);
    dropped.push(...(this.#waiting.get(client) ?? []));
    this.#waiting.delete(client);
    this.#drop(dropped, reason);
  }

  /** Refuses new tasks, rejects every one not started, and resolves once running tasks are done. */
  async drain(reason: BridgeError): Promise<void> {
    this.#draining = true;
    const dropped = [...this.#preparing, ...[...this.#waiting.values()].flat()];
    this.#preparing.clear();
    this.#waiting.clear();
    this.#drop(dropped, reason);
    for (const task of this.#background.splice(0)) task.reject(reason);
    if (this.#running === 0) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  #enqueue(task: Task): void {
    const queue = this.#waiting.get(task.client);
    if (queue === undefined) this.#waiting.set(task.client, [task]);
    else queue.push(task);
    this.#pump();
  }

  /** Takes tasks that never ran out of the counts and rejects them. */
  #drop(tasks: readonly Task[], reason: unknown): void {
    this.#queued -= tasks.length;
    for (const task of tasks) {
      this.#release(task.client);
      task.reject(reason);
    }
  }

  #release(client: string): void {
    const left = (this.#perClient.get(client) ?? 0) - 1;
    if (left > 0) this.#perClient.set(client, left);
    else this.#perClient.delete(client);
  }

  #pump(): void {
    while (this.#running < this.#options.concurrency) {
      const next = this.#waiting.entries().next();
      if (next.done) {
        const background = this.#background.shift();
        if (background === undefined) return;
        this.#running++;
        void this.#execute({ client: '', run: background.run, resolve: background.resolve, reject: background.reject }, false);
        continue;
      }
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

  async #execute(task: Task, countedForClient = true): Promise<void> {
    try {
      task.resolve(await task.run());
    } catch (error) {
      task.reject(error);
    } finally {
      this.#running--;
      if (countedForClient) this.#release(task.client);
      this.#pump();
      if (this.#running === 0 && this.#queued === 0) {
        for (const wake of this.#idleWaiters.splice(0)) wake();
      }
    }
  }
}
