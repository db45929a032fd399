import net from 'node:net';
import { Engine } from '../../src/engine.ts';
import { DEFAULT_WORK_LIMITS } from '../../src/limits.ts';
import { PROTOCOL_VERSION } from '../../src/protocol/messages.ts';
import { makeLatent, type Latent } from '../../src/latent.ts';
import { renderPreview } from '../../src/preview.ts';
import { silentProgress } from '../../src/store/download-progress.ts';
import { ModelStore } from '../../src/store/store.ts';
import { decodeFloats, encodeFloats, type FloatDtype } from '../../src/tensor.ts';
import { seededData } from './conformance.ts';
import { cpuRuntime, packr, TestClient, type Reply } from './server-harness.ts';
import { RawWebSocket } from './server-raw-socket.ts';

/** The networks a soak uses; a sidecar under soak must see them in its --models folder. */
export const SOAK_MODELS = ['upscaler-v1-x2.0', 'interposer-xl-to-v1'];

const DTYPES: readonly FloatDtype[] = ['float32', 'float16'];
const VARIANTS = 4;

interface SoakCase {
  readonly request: Record<string, unknown>;
  /** What is wrong with the reply, or undefined when it is right. */
  readonly check: (reply: Reply) => string | undefined;
}

/** The soak's inputs and, computed here with the same engine code and weights, the answers it must get. */
export class SoakCases {
  readonly #v1: Latent[];
  readonly #xl: Latent[];
  readonly #expected: Map<string, Uint8Array>;

  private constructor(v1: Latent[], xl: Latent[], expected: Map<string, Uint8Array>) {
    this.#v1 = v1;
    this.#xl = xl;
    this.#expected = expected;
  }

  static async create(modelsDir: string): Promise<SoakCases> {
    const store = new ModelStore({ modelDirs: [modelsDir], offline: true, progress: silentProgress });
    const engine = new Engine({ source: store, runtime: await cpuRuntime() });
    const v1 = Array.from({ length: VARIANTS }, (_, i) => makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 300 + i)));
    const xl = Array.from({ length: VARIANTS }, (_, i) => makeLatent('xl', 'model', [1, 4, 8, 8], seededData(256, 400 + i)));
    const expected = new Map<string, Uint8Array>();
    for (const dtype of DTYPES) {
      for (let i = 0; i < VARIANTS; i++) {
        expected.set(`upscale/${dtype}/${i}`, encodeFloats(dtype, (await engine.perform({ op: 'upscale', latent: sent(v1[i], dtype), target: { height: 16, width: 16 } }, DEFAULT_WORK_LIMITS)).latent.data));
        expected.set(`interpose/${dtype}/${i}`, encodeFloats(dtype, (await engine.perform({ op: 'interpose', latent: sent(xl[i], dtype), to: 'v1' }, DEFAULT_WORK_LIMITS)).latent.data));
        expected.set(`preview/${dtype}/${i}`, renderPreview(sent(v1[i], dtype)).data);
      }
    }
    return new SoakCases(v1, xl, expected);
  }

  /** Request `n` of client `client`: hello, models, previews, inference and a request that must fail, in turn. */
  make(client: number, n: number): SoakCase {
    const i = (client + n) % VARIANTS;
    const dtype = DTYPES[(client + n) % DTYPES.length];
    const sameBytes = (key: string, field: 'latent' | 'image') => (reply: Reply) => {
      if (reply.ok !== true) return `${key}: ${JSON.stringify(reply.error)}`;
      const bytes = new Uint8Array(reply[field].data);
      const expected = this.#expected.get(key) as Uint8Array;
      return bytes.length === expected.length && bytes.every((b, k) => b === expected[k]) ? undefined : `${key}: other bytes`;
    };
    switch (n % 8) {
      case 0:
      case 7:
        return { request: { op: 'hello', protocol: PROTOCOL_VERSION, client: `soak-${client}` }, check: (r) => (r.ok && r.protocol === PROTOCOL_VERSION ? undefined : `hello: ${JSON.stringify(r)}`) };
      case 1:
        return { request: { op: 'models' }, check: (r) => (r.ok && r.models.length > 10 ? undefined : `models: ${JSON.stringify(r).slice(0, 200)}`) };
      case 2:
        return { request: { op: 'preview', family: 'v1', job: `soak-${client}`, step: n, total: 200, latent: tensor(this.#v1[i], dtype) }, check: sameBytes(`preview/${dtype}/${i}`, 'image') };
      case 3:
        return { request: { op: 'upscale', family: 'v1', scale: 2, latent: tensor(this.#v1[i], dtype) }, check: sameBytes(`upscale/${dtype}/${i}`, 'latent') };
      case 4:
        return { request: { op: 'preview', family: 'v1', publish: false, latent: tensor(this.#v1[i], dtype) }, check: sameBytes(`preview/${dtype}/${i}`, 'image') };
      case 5:
        return {
          request: { op: 'upscale', family: 'sd9', scale: 2, latent: tensor(this.#v1[i], dtype) },
          check: (r) => (r.ok === false && r.error.code === 'unknown_family' ? undefined : `unknown family: ${JSON.stringify(r).slice(0, 200)}`),
        };
      default:
        return { request: { op: 'interpose', from: 'xl', to: 'v1', latent: tensor(this.#xl[i], dtype) }, check: sameBytes(`interpose/${dtype}/${i}`, 'latent') };
    }
  }
}

/** The latent as the server sees it after the dtype round trip. */
function sent(latent: Latent, dtype: FloatDtype): Latent {
  return makeLatent(latent.family, 'model', latent.shape, decodeFloats(dtype, encodeFloats(dtype, latent.data)));
}

function tensor(latent: Latent, dtype: FloatDtype) {
  return { dtype, shape: [...latent.shape], data: encodeFloats(dtype, latent.data) };
}

export interface SoakOptions {
  readonly port: number;
  readonly cases: SoakCases;
  readonly clients?: number;
  readonly requests?: number;
  /** Plain TCP connections that never send a byte, held open through the round. */
  readonly idleSockets?: number;
  /** WebSocket peers that say hello and then go silent, never answering a ping; the server must drop them. */
  readonly silentPeers?: number;
}

export interface SoakResult {
  readonly answered: number;
  /** Every wrong or missing answer, described. */
  readonly wrong: readonly string[];
}

/** Requests each client keeps in flight. */
const WINDOW = 3;

/**
 * One round: idle sockets and silent peers are opened and held, then every client sends its
 * requests (a few in flight at a time) and checks each answer; the round ends when the clients
 * are done and the server has dropped every silent peer.
 */
export async function soakRound(options: SoakOptions): Promise<SoakResult> {
  const { port, cases, clients = 16, requests = 200, idleSockets = 50, silentPeers = 8 } = options;
  const idle = await Promise.all(
    Array.from({ length: idleSockets }, () => {
      const socket = net.connect(port, '127.0.0.1');
      socket.on('error', () => {});
      return new Promise<net.Socket>((resolve) => socket.once('connect', () => resolve(socket)));
    }),
  );
  const silent = await Promise.all(
    Array.from({ length: silentPeers }, async (_, k) => {
      const peer = await RawWebSocket.connect(port);
      peer.write(RawWebSocket.frame(packr.pack({ id: 0, op: 'hello', protocol: PROTOCOL_VERSION, client: `silent-${k}` })));
      return peer;
    }),
  );
  const wrong: string[] = [];
  const runClient = async (client: number): Promise<number> => {
    const connection = await TestClient.connect(`ws://127.0.0.1:${port}/ws`);
    let next = 0;
    let answered = 0;
    const worker = async (): Promise<void> => {
      while (next < requests) {
        const n = next++;
        const one = cases.make(client, n);
        const reply = await connection.request({ id: `${client}:${n}`, ...one.request });
        const problem = reply.id === `${client}:${n}` ? one.check(reply) : `reply for ${reply.id} to ${client}:${n}`;
        if (problem !== undefined) wrong.push(`${client}:${n} ${problem}`);
        answered++;
      }
    };
    await Promise.all(Array.from({ length: WINDOW }, worker));
    connection.close();
    await connection.closed;
    return answered;
  };
  const answered = (await Promise.all(Array.from({ length: clients }, (_, c) => runClient(c)))).reduce((a, b) => a + b, 0);
  for (const socket of idle) socket.destroy();
  await Promise.all(silent.map((peer) => peer.closed));
  return { answered, wrong };
}
