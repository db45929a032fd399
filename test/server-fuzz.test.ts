import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { ERROR_CODES } from '../src/errors.ts';
import { makeLatent } from '../src/latent.ts';
import { DEFAULT_WORK_LIMITS } from '../src/limits.ts';
import { renderPreview } from '../src/preview.ts';
import { seededData } from './support/conformance.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';
import { f32Values, packr, startTestServer, TestClient, wireTensor, type Reply, type TestServer } from './support/server-harness.ts';
import { seededRandom } from './support/random.ts';

const FRAMES = 10_000;
const BATCH = 100;

/** mulberry32: the same frames on every run, so a failure can be replayed. */

const rand = seededRandom(20240601);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(items: readonly T[]): T => items[int(items.length)];

function randomValue(depth = 0): unknown {
  switch (int(depth > 3 ? 7 : 10)) {
    case 0: return null;
    case 1: return rand() < 0.5;
    case 2: return pick([0, -1, 1, 2 ** 31, -(2 ** 53), 2 ** 64, 1.5, NaN, Infinity, -0]);
    case 3: return int(1000) - 500;
    case 4: return pick(['', 'v1', 'xl', 'fx', 'float32', 'float16', 'hello', 'upscale', 'preview', 'x'.repeat(int(400)), '__proto__', 'constructor']);
    case 5: return new Uint8Array(int(64)).map(() => int(256));
    case 6: return rand() * 1e6 - 5e5;
    case 7: return Array.from({ length: int(5) }, () => randomValue(depth + 1));
    case 8: return Object.fromEntries(Array.from({ length: int(5) }, () => [pick(['id', 'op', 'latent', 'shape', 'dtype', 'data', 'family', 'size', 'scale', 'from', 'to', '__proto__', 'z']), randomValue(depth + 1)]));
    default: return { dtype: pick(['float32', 'float16', 'bfloat16', 'int8', 7]), shape: randomShape(), data: new Uint8Array(int(300)) };
  }
}

function randomShape(): unknown {
  return pick([
    [1, 4, 8, 8],
    [1, 4, 2 ** 20, 2 ** 20],
    [2 ** 53, 4, 1, 1],
    [1, 4, -8, 8],
    [1, 4, 8],
    [0, 4, 8, 8],
    [1, 4, 8.5, 8],
    [1, '4', 8, 8],
    [1, 16, 4, 4],
    [1e308, 1e308, 1e308, 1e308],
    'shape',
  ]);
}

function validRequest(): Record<string, unknown> {
  const latent = { dtype: 'float32', shape: [1, 4, 4, 4], data: new Uint8Array(4 * 64) };
  return pick<Record<string, unknown>>([
    { id: 1, op: 'hello', protocol: PROTOCOL_VERSION },
    { id: 2, op: 'models' },
    { id: 3, op: 'preview', family: 'v1', latent, job: 'fuzz', step: 1, total: 2 },
    { id: 4, op: 'upscale', family: 'v1', scale: 2, latent },
    { id: 5, op: 'interpose', from: 'xl', to: 'v1', latent },
    { id: 6, op: 'hires', from: 'xl', to: 'v1', size: [8, 8], latent },
  ]);
}

/** Overwrites, deletes or retypes one field, possibly a nested tensor field. */
function mutated(): Record<string, unknown> {
  const request = validRequest();
  const key = pick([...Object.keys(request), 'latent.shape', 'latent.dtype', 'latent.data']);
  if (key.startsWith('latent.') && typeof request.latent === 'object') {
    const tensor = { ...(request.latent as Record<string, unknown>) };
    const field = key.slice(7);
    if (rand() < 0.2) delete tensor[field];
    else tensor[field] = field === 'shape' ? randomShape() : randomValue();
    return { ...request, latent: tensor };
  }
  if (rand() < 0.3) {
    const copy = { ...request };
    delete copy[key];
    return copy;
  }
  return { ...request, [key]: randomValue() };
}

/** msgpack headers that declare far more than the frame holds. */
function hugeDeclaration(): Uint8Array {
  return pick([
    Uint8Array.from([0xc6, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3]), // bin32 of 4 GiB
    Uint8Array.from([0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0]), // array32 of 2^32 - 1
    Uint8Array.from([0xdf, 0x7f, 0xff, 0xff, 0xff, 0xa1, 0x61]), // map32 of 2^31
    Uint8Array.from([0xdb, 0xff, 0xff, 0xff, 0xff]), // str32
    Uint8Array.from([0xc9, 0xff, 0xff, 0xff, 0xff, 0x01]), // ext32
    Uint8Array.from([0x81, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xc6, 0x7f, 0xff, 0xff, 0xff]), // {data: bin32 2 GiB}
    new Uint8Array(3000).fill(0x91), // 3000 nested arrays
    new Uint8Array(3000).map((_, i) => (i % 2 ? 0xa1 : 0x81)), // nested maps
  ]);
}

function fuzzFrame(): Uint8Array | string {
  const kind = int(8);
  if (kind === 0) return new Uint8Array(int(200)).map(() => int(256));
  if (kind === 1) return hugeDeclaration();
  if (kind === 2) {
    const frame = packr.pack(validRequest());
    return frame.subarray(0, int(frame.length));
  }
  if (kind === 3) return packr.pack(randomValue());
  if (kind === 4) return pick(['hello', '{"id":1,"op":"hello","protocol":1}', '']);
  if (kind === 5) {
    const frame = Uint8Array.from(packr.pack(validRequest()));
    for (let i = 0; i < 3; i++) frame[int(frame.length)] = int(256);
    return frame;
  }
  return packr.pack(mutated());
}

let server: TestServer;

beforeAll(async () => {
  server = await startTestServer({
    models: ['upscaler-v1-x2.0', 'interposer-xl-to-v1'],
    limits: { maxElements: 4 * 64 * 64, maxSide: 64, maxPayload: 256 * 1024 },
  });
});

afterAll(() => server.close());

describe('fuzz', () => {
  it(`survives ${FRAMES} malformed frames while a well-behaved client keeps getting correct answers`, async () => {
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 42));
    const expectedUpscale = (await server.engine.perform({ op: 'upscale', latent, target: { height: 16, width: 16 } }, DEFAULT_WORK_LIMITS)).latent.data;
    let fuzzing = true;
    let goodAnswers = 0;

    const wellBehaved = (async () => {
      const client = await TestClient.connect(server.wsUrl);
      let round = 0;
      while (fuzzing || round < 5) {
        round++;
        const hello = await client.request({ op: 'hello', protocol: PROTOCOL_VERSION });
        expect(hello.ok).toBe(true);
        const preview = await client.request({ op: 'preview', family: 'v1', job: `good-${round}`, latent: wireTensor(latent.shape, latent.data) });
        expect(new Uint8Array(preview.image.data)).toEqual(renderPreview(latent).data);
        const upscale = await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) });
        expect(upscale.ok).toBe(true);
        expect(f32Values(upscale.latent.data)).toEqual(expectedUpscale);
        goodAnswers += 3;
      }
      client.close();
    })();

    let fuzzer = await TestClient.connect(server.wsUrl);
    let reconnects = 0;
    const checkReply = (reply: Reply) => {
      expect(reply.ok === true || reply.ok === false).toBe(true);
      if (reply.ok === false) expect(ERROR_CODES).toContain(reply.error.code);
    };
    for (let sent = 0; sent < FRAMES; sent += BATCH) {
      for (let i = 0; i < BATCH; i++) fuzzer.sendRaw(fuzzFrame());
      // A hello after each batch: flow control, and proof the connection still answers.
      const sync = await Promise.race([fuzzer.request({ id: `sync-${sent}`, op: 'hello', protocol: PROTOCOL_VERSION }), fuzzer.closed]);
      if ('code' in sync && !('ok' in sync)) {
        // Only a frame over maxPayload may close the connection, with 1009.
        expect(sync.code).toBe(1009);
        reconnects++;
        fuzzer = await TestClient.connect(server.wsUrl);
        continue;
      }
      expect((sync as Reply).ok).toBe(true);
      for (const event of fuzzer.events.splice(0)) checkReply(event);
    }
    fuzzer.close();

    // Frames that break the WebSocket framing itself: the server closes that connection and carries on.
    for (let i = 0; i < 50; i++) {
      const raw = await RawWebSocket.connect(server.server.port);
      const opcode = pick([0x3, 0x7, 0xb, 0x0]);
      raw.write(Buffer.concat([RawWebSocket.frame(packr.pack({ id: 1, op: 'hello', protocol: PROTOCOL_VERSION })), RawWebSocket.frame(new Uint8Array(int(20)), opcode)]));
      await raw.closed;
    }

    fuzzing = false;
    await wellBehaved;
    expect(goodAnswers).toBeGreaterThanOrEqual(15);
    expect(reconnects).toBeLessThan(FRAMES / BATCH);
    const health = await (await fetch(`${server.server.url}/healthz`)).json();
    expect(health.ok).toBe(true);
    const metrics = await (await fetch(`${server.server.url}/metrics`)).text();
    const errors = [...metrics.matchAll(/^latent_bridge_errors_total\{.*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    expect(errors).toBeGreaterThan(FRAMES / 2);
  });
});
