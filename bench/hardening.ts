import { Worker } from 'node:worker_threads';
import { makeModelsDir } from '../test/support/models-dir.ts';
import { frameBombs } from '../test/support/frame-bombs.ts';
import { packr } from '../test/support/server-harness.ts';
import { rssBytes } from '../test/support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from '../test/support/server-process.ts';
import { RawWebSocket } from '../test/support/server-raw-socket.ts';
import { SOAK_MODELS, SoakCases, soakRound } from '../test/support/soak.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { DEFAULT_LIMITS } from '../src/server/options.ts';
import type { BenchGroup, BenchResult } from './types.ts';

const MIB = 1024 * 1024;
/** The default --max-payload-mb: the largest frame any client may send. */
const PAYLOAD = DEFAULT_LIMITS.maxPayload;
const PAYLOAD_LABEL = `${PAYLOAD / MIB} MiB`;
/** The largest float32 v1 latent a frame of that size holds: 4 channels, square-ish. */
const PREVIEW_SIDE = Math.floor(Math.sqrt((PAYLOAD - 1024) / 16));
const STALL_TARGET_MS = 100;
const HEARTBEAT_MS = 1000;
/** A vanished peer must be gone within this many heartbeats (2 to 2.5 by design). */
const DROP_TARGET_RATIO = 2.5;
const SOAK_GROWTH_TARGET_MIB = 24;

async function serve(args: string[]): Promise<ServeProcess> {
  return spawnServe(['--port', '0', '--offline', '--device', 'cpu', ...args], isolatedEnv());
}

/** The longest time the server left a `hello` unanswered while `work` ran, measured from a worker thread. */
class StallProbe {
  readonly #worker: Worker;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  static async start(port: number): Promise<StallProbe> {
    const module = new URL('./stall-probe.ts', import.meta.url).href;
    const worker = new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(module)}); })`, {
      eval: true,
      workerData: { url: `ws://127.0.0.1:${port}/ws` },
    });
    await new Promise((resolve) => worker.once('message', resolve));
    return new StallProbe(worker);
  }

  async during(work: () => Promise<unknown>): Promise<number> {
    this.#worker.postMessage('start');
    await work();
    // A stall that ends with the reply is over; one that follows it shows within this settling time.
    await new Promise((resolve) => setTimeout(resolve, 50));
    const worst = new Promise<number>((resolve) => this.#worker.once('message', resolve));
    this.#worker.postMessage('stop');
    return worst;
  }

  async close(): Promise<void> {
    this.#worker.postMessage('close');
    await this.#worker.terminate();
  }
}

/** The worst frames a client may send at the default --max-payload-mb, each next to a valid frame of the same size. */
async function frameStalls(rounds: number): Promise<BenchResult[]> {
  const server = await serve(['--models', makeModelsDir([])]);
  const probe = await StallProbe.start(server.port);
  const sender = await RawWebSocket.connect(server.port);
  const frames: Record<string, Uint8Array> = {
    // A valid hello with a large field the server ignores: the cost of receiving any frame this big.
    'valid hello padded with a bin': packr.pack({ id: 'frame', op: 'hello', protocol: PROTOCOL_VERSION, padding: new Uint8Array(PAYLOAD - 64) }),
    ...frameBombs(PAYLOAD),
    // The largest preview that fits: decoding and drawing the most elements a frame holds.
    [`valid preview of a 1x4x${PREVIEW_SIDE}x${PREVIEW_SIDE} float32 latent`]: packr.pack({
      id: 'frame',
      op: 'preview',
      family: 'v1',
      latent: { dtype: 'float32', shape: [1, 4, PREVIEW_SIDE, PREVIEW_SIDE], data: new Uint8Array(4 * PREVIEW_SIDE * PREVIEW_SIDE * 4) },
    }),
  };
  const worst = new Map<string, number>();
  try {
    const idle = await probe.during(() => new Promise((resolve) => setTimeout(resolve, 500)));
    worst.set('nothing (the probe alone)', idle);
    for (let round = 0; round < rounds; round++) {
      for (const [name, payload] of Object.entries(frames)) {
        const frame = RawWebSocket.frame(payload);
        const count = sender.messages.length;
        const stall = await probe.during(async () => {
          sender.write(frame);
          await sender.waitForMessages(count + 1);
        });
        worst.set(name, Math.max(worst.get(name) ?? 0, stall));
      }
    }
  } finally {
    await probe.close();
    sender.close();
    server.child.kill('SIGKILL');
  }
  const baseline = worst.get('valid hello padded with a bin') as number;
  return [...worst].map(([name, ms]) => ({
    name: `event-loop stall: ${name} (${name.startsWith('nothing') ? 'no frame' : `${PAYLOAD_LABEL} frame`}) vs a valid ${PAYLOAD_LABEL} hello`,
    ms,
    baseline_ms: baseline,
    ratio: ms / baseline,
    target: `worst stall < ${STALL_TARGET_MS} ms`,
    ok: ms < STALL_TARGET_MS,
  }));
}

/** How long a peer that vanished keeps its connection, next to the heartbeat it is held to. */
async function dropTime(rounds: number): Promise<BenchResult> {
  const server = await serve(['--models', makeModelsDir([]), '--heartbeat-ms', String(HEARTBEAT_MS)]);
  try {
    const times = await Promise.all(
      Array.from({ length: Math.max(rounds, 3) }, async () => {
        const peer = await RawWebSocket.connect(server.port);
        const start = performance.now();
        await peer.closed;
        return performance.now() - start;
      }),
    );
    const ms = Math.max(...times);
    return {
      name: `vanished peer dropped after (worst of ${times.length}) vs --heartbeat-ms ${HEARTBEAT_MS}`,
      ms,
      baseline_ms: HEARTBEAT_MS,
      ratio: ms / HEARTBEAT_MS,
      target: `ratio <= ${DROP_TARGET_RATIO} (at the default 30 s: gone within 75 s)`,
      ok: ms / HEARTBEAT_MS <= DROP_TARGET_RATIO,
    };
  } finally {
    server.child.kill('SIGKILL');
  }
}

/** Server RSS before and after two soak rounds (test/server-soak.test.ts does the same, with assertions). */
async function soakMemory(): Promise<BenchResult[]> {
  const models = makeModelsDir(SOAK_MODELS);
  const cases = await SoakCases.create(models);
  const server = await serve(['--models', models, '--heartbeat-ms', String(HEARTBEAT_MS)]);
  const pid = server.child.pid as number;
  try {
    const rss = [rssBytes(pid) / MIB];
    const wrong: string[] = [];
    for (let round = 0; round < 2; round++) {
      const result = await soakRound({ port: server.port, cases });
      wrong.push(...result.wrong);
      rss.push(rssBytes(pid) / MIB);
    }
    return [
      {
        name: 'soak: server RSS after round 1 vs before (MiB; 16 clients x 200 requests, 50 idle sockets, 8 silent peers)',
        ms: rss[1],
        baseline_ms: rss[0],
        ratio: rss[1] / rss[0],
        target: 'every answer right',
        ok: wrong.length === 0,
        unit: 'MiB',
      },
      {
        name: 'soak: server RSS after round 2 vs after round 1 (MiB)',
        ms: rss[2],
        baseline_ms: rss[1],
        ratio: rss[2] / rss[1],
        target: `round 2 adds < ${SOAK_GROWTH_TARGET_MIB} MiB`,
        ok: rss[2] - rss[1] < SOAK_GROWTH_TARGET_MIB,
        unit: 'MiB',
      },
    ];
  } finally {
    server.child.kill('SIGKILL');
  }
}

/**
 * What a hostile or flaky client can cost the sidecar (issue 8), against real server processes:
 * the worst event-loop stall from one frame, how long a vanished peer holds its slot, and memory
 * across a soak.
 */
export const hardeningBench: BenchGroup = async ({ rounds }) => [...(await soakMemory()), await dropTime(rounds), ...(await frameStalls(rounds))];
