import { SILENT_LOG } from '../../src/console-log.ts';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Packr, Unpackr } from 'msgpackr';
import WebSocket from 'ws';
import { Engine } from '../../src/engine.ts';
import { Runtime } from '../../src/runtime.ts';
import { silentProgress } from '../../src/store/download-progress.ts';
import { ModelStore } from '../../src/store/store.ts';
import { DEFAULT_LIMITS, type ServerLimits } from '../../src/server/options.ts';
import { startServer, type RunningServer } from '../../src/server/server.ts';
import { makeModelsDir } from './models-dir.ts';

export const packr = new Packr({ useRecords: false });
export const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true });

export interface TestServer {
  readonly server: RunningServer;
  readonly engine: Engine;
  readonly wsUrl: string;
  close(): Promise<void>;
}

let sharedRuntime: Promise<Runtime> | undefined;

/** One CPU runtime per test process: creating it probes onnxruntime. */
export function cpuRuntime(): Promise<Runtime> {
  return (sharedRuntime ??= Runtime.create({ device: 'cpu' }));
}

/** A store that only sees the stand-in weights: an empty HF cache, never online. */
export function testStore(models?: readonly string[]): ModelStore {
  const work = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-server-'));
  return new ModelStore({
    modelDirs: [makeModelsDir(models)],
    cacheDir: path.join(work, 'hub'),
    stateDir: path.join(work, 'state'),
    offline: true,
    progress: silentProgress,
  });
}

/** The real server with the real engine on a free loopback port. */
export async function startTestServer(
  options: { limits?: Partial<ServerLimits>; token?: string; host?: string; models?: readonly string[]; store?: ModelStore; previewIdleMs?: number } = {},
): Promise<TestServer> {
  const store = options.store ?? testStore(options.models);
  const engine = new Engine({ source: store, runtime: await cpuRuntime() });
  const server = await startServer({
    host: options.host ?? '127.0.0.1',
    port: 0,
    token: options.token,
    limits: { ...DEFAULT_LIMITS, ...options.limits },
    engine,
    identity: { version: 'test', device: engine.device },
    listModels: () => store.list(),
    previewIdleMs: options.previewIdleMs,
    log: SILENT_LOG,
  });
  return { server, engine, wsUrl: `ws://127.0.0.1:${server.port}/ws`, close: () => server.close() };
}

export type Reply = Record<string, any>;

/** A protocol client over a real WebSocket: requests matched to replies by id, pushes collected. */
export class TestClient {
  readonly ws: WebSocket;
  readonly events: Reply[] = [];
  readonly #waiting = new Map<unknown, (reply: Reply) => void>();
  readonly #eventWaiters: (() => void)[] = [];
  #nextId = 1;
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer) => {
      const message = unpackr.unpack(data) as Reply;
      const resolve = this.#waiting.get(message.id);
      if (resolve !== undefined && 'ok' in message) {
        this.#waiting.delete(message.id);
        resolve(message);
      } else {
        this.events.push(message);
        for (const wake of this.#eventWaiters.splice(0)) wake();
      }
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static async connect(url: string, options: WebSocket.ClientOptions = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    return new TestClient(ws);
  }

  /** Sends `message` with a fresh id (unless it has one) and resolves with the reply carrying that id. */
  request(message: Record<string, unknown>): Promise<Reply> {
    const id = message.id ?? this.#nextId++;
    const reply = this.expectReply(id);
    this.ws.send(packr.pack({ ...message, id }));
    return reply;
  }

  expectReply(id: unknown): Promise<Reply> {
    return new Promise((resolve) => this.#waiting.set(id, resolve));
  }

  /** Sends bytes as they are, for malformed frames. */
  sendRaw(frame: Uint8Array | string): void {
    this.ws.send(frame);
  }

  /** Resolves when a pushed message or id-less reply matching `test` has arrived. */
  async waitForEvent(test: (event: Reply) => boolean): Promise<Reply> {
    for (;;) {
      const found = this.events.find(test);
      if (found !== undefined) return found;
      await new Promise<void>((resolve) => this.#eventWaiters.push(resolve));
    }
  }

  close(): void {
    this.ws.close();
  }
}

/** Connection attempt result: open, or the HTTP status the server refused the upgrade with. */
export function tryUpgrade(url: string, options: WebSocket.ClientOptions = {}): Promise<{ opened: boolean; status?: number }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, options);
    ws.once('open', () => {
      ws.close();
      resolve({ opened: true });
    });
    ws.once('unexpected-response', (_request, response) => {
      resolve({ opened: false, status: response.statusCode });
      response.resume();
      ws.terminate();
    });
    ws.once('error', () => resolve({ opened: false }));
  });
}

/** Float32 values as the little-endian bytes of a wire tensor. */
export function f32Bytes(values: Float32Array): Uint8Array {
  return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
}

/** Wire bytes back to float32 values, copying because msgpack bin data is not aligned. */
export function f32Values(bytes: Uint8Array): Float32Array {
  return new Float32Array(Uint8Array.from(bytes).buffer);
}

export function wireTensor(shape: readonly number[], values: Float32Array): { dtype: 'float32'; shape: number[]; data: Uint8Array } {
  return { dtype: 'float32', shape: [...shape], data: f32Bytes(values) };
}

/** A reply's plan (docs/protocol.md, "Plans") in the words of `describeStep`, e.g. `upscaler-v1-x2.0 24x24 -> 48x48`. */
export function planSteps(plan: { steps: { network: string | null; in: number[]; out: number[] }[] }): string[] {
  return plan.steps.map((step) => `${step.network ?? 'bilinear'} ${step.in.join('x')} -> ${step.out.join('x')}`);
}
