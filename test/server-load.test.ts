import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { DEFAULT_WORK_LIMITS } from '../src/limits.ts';
import { renderPreview } from '../src/preview.ts';
import { decodeFloats, encodeFloats, type FloatDtype } from '../src/tensor.ts';
import { seededData } from './support/conformance.ts';
import { startTestServer, TestClient, type Reply, type TestServer } from './support/server-harness.ts';

const CLIENTS = 16;
const REQUESTS = 200;
/** Requests each client keeps in flight: below the per-client limit, so nothing is `busy`. */
const WINDOW = 3;

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({ models: ['upscaler-v1-x2.0', 'interposer-xl-to-v1'] });
});

afterAll(() => server.close());

interface Case {
  readonly request: Record<string, unknown>;
  readonly check: (reply: Reply) => void;
}

const DTYPES: readonly FloatDtype[] = ['float32', 'float16', 'bfloat16'];

/** The latent as the server will see it after the dtype round trip. */
function sent(latent: Latent, dtype: FloatDtype): Latent {
  return makeLatent(latent.family, 'model', latent.shape, decodeFloats(dtype, encodeFloats(dtype, latent.data)));
}

function tensor(latent: Latent, dtype: FloatDtype) {
  return { dtype, shape: [...latent.shape], data: encodeFloats(dtype, latent.data) };
}

describe('load', () => {
  it(`${CLIENTS} clients x ${REQUESTS} mixed requests: every answer correct, none lost`, async () => {
    const v1 = Array.from({ length: 4 }, (_, i) => makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 100 + i)));
    const xl = Array.from({ length: 4 }, (_, i) => makeLatent('xl', 'model', [1, 4, 8, 8], seededData(256, 200 + i)));
    // Expected results from the engine itself, per input and dtype.
    const expected = new Map<string, Uint8Array>();
    for (const dtype of DTYPES) {
      for (let i = 0; i < 4; i++) {
        const up = await server.engine.perform({ op: 'upscale', latent: sent(v1[i], dtype), target: { height: 16, width: 16 } }, DEFAULT_WORK_LIMITS);
        expected.set(`upscale/${dtype}/${i}`, encodeFloats(dtype, up.latent.data));
        const inter = (await server.engine.perform({ op: 'interpose', latent: sent(xl[i], dtype), to: 'v1' }, DEFAULT_WORK_LIMITS)).latent;
        expected.set(`interpose/${dtype}/${i}`, encodeFloats(dtype, inter.data));
        const hires = await server.engine.perform({ op: 'hires', latent: sent(xl[i], dtype), to: 'v1', target: { height: 16, width: 16 } }, DEFAULT_WORK_LIMITS);
        expected.set(`hires/${dtype}/${i}`, encodeFloats(dtype, hires.latent.data));
      }
    }

    const makeCase = (client: number, n: number): Case => {
      const i = (client + n) % 4;
      const dtype = DTYPES[(client * 7 + n) % 3];
      const sameBytes = (key: string) => (reply: Reply) => {
        expect(reply.ok).toBe(true);
        expect(reply.latent.dtype).toBe(dtype);
        expect(new Uint8Array(reply.latent.data)).toEqual(expected.get(key));
      };
      switch (n % 6) {
        case 0:
          return { request: { op: 'hello', protocol: PROTOCOL_VERSION, client: `load-${client}` }, check: (r) => expect(r).toMatchObject({ ok: true, protocol: PROTOCOL_VERSION }) };
        case 1:
          return { request: { op: 'upscale', family: 'v1', scale: 2, latent: tensor(v1[i], dtype) }, check: sameBytes(`upscale/${dtype}/${i}`) };
        case 2:
          return {
            request: { op: 'preview', family: 'v1', latent: tensor(v1[i], dtype), job: `load-${client}-${n}` },
            check: (r) => expect(new Uint8Array(r.image.data)).toEqual(renderPreview(sent(v1[i], dtype)).data),
          };
        case 3:
          return { request: { op: 'interpose', from: 'xl', to: 'v1', latent: tensor(xl[i], dtype) }, check: sameBytes(`interpose/${dtype}/${i}`) };
        case 4:
          return { request: { op: 'hires', from: 'xl', to: 'v1', size: [16, 16], latent: tensor(xl[i], dtype) }, check: sameBytes(`hires/${dtype}/${i}`) };
        default:
          return n % 12 === 5
            ? { request: { op: 'models' }, check: (r) => expect(r.models.length).toBeGreaterThan(10) }
            : { request: { op: 'upscale', family: 'sd9', scale: 2, latent: tensor(v1[i], dtype) }, check: (r) => expect(r.error.code).toBe('unknown_family') };
      }
    };

    const runClient = async (client: number): Promise<number> => {
      const connection = await TestClient.connect(server.wsUrl);
      let next = 0;
      let answered = 0;
      const worker = async () => {
        while (next < REQUESTS) {
          const n = next++;
          const one = makeCase(client, n);
          const reply = await connection.request({ id: `${client}:${n}`, ...one.request });
          expect(reply.id).toBe(`${client}:${n}`);
          one.check(reply);
          answered++;
        }
      };
      await Promise.all(Array.from({ length: WINDOW }, worker));
      connection.close();
      return answered;
    };

    const answered = await Promise.all(Array.from({ length: CLIENTS }, (_, c) => runClient(c)));
    expect(answered).toEqual(Array(CLIENTS).fill(REQUESTS));
    const metrics = await (await fetch(`${server.server.url}/metrics`)).text();
    expect(metrics).not.toMatch(/code="busy"/);
    expect(metrics).toMatch(/^latent_bridge_queue_depth 0$/m);
  });
});
