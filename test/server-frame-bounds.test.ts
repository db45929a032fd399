import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { frameBombs } from './support/frame-bombs.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { packr, TestClient } from './support/server-harness.ts';
import { rssBytes } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

const MIB = 1024 * 1024;
const PAYLOAD_MB = 16;

let serve: ServeProcess;
beforeAll(async () => {
  serve = await spawnServe(['--port', '0', '--offline', '--device', 'cpu', '--models', makeModelsDir([]), '--max-payload-mb', String(PAYLOAD_MB)], isolatedEnv());
});
afterAll(() => {
  serve.child.kill('SIGKILL');
});

describe('frames too large in structure (decoding bombs)', () => {
  it(`answers each ${PAYLOAD_MB} MiB bomb too_large without decoding it, and the same connection carries on`, async () => {
    const bombs = frameBombs(PAYLOAD_MB * MIB);
    const raw = await RawWebSocket.connect(serve.port);
    const before = rssBytes(serve.child.pid as number);
    let replies = 0;
    for (const [name, bomb] of Object.entries(bombs)) {
      raw.write(RawWebSocket.frame(bomb));
      raw.write(RawWebSocket.frame(packr.pack({ id: name, op: 'hello', protocol: PROTOCOL_VERSION })));
      const [refused, hello] = (await raw.waitForMessages((replies += 2))).slice(-2);
      expect(refused, name).toMatchObject({ id: null, ok: false, error: { code: 'too_large', message: expect.stringMatching(/limit --max-frame-(items|depth|strings-kb)/) } });
      expect(hello).toMatchObject({ id: name, ok: true });
    }
    // Decoding the first of them alone used to take over 1 GiB.
    expect(rssBytes(serve.child.pid as number) - before).toBeLessThan(256 * MIB);
    raw.close();
  });

  it('tells clients the bounds, and takes a valid message of a few fields around a large bin', async () => {
    const client = await TestClient.connect(`ws://127.0.0.1:${serve.port}/ws`);
    const hello = await client.request({ op: 'hello', protocol: PROTOCOL_VERSION });
    expect(hello.limits).toMatchObject({ max_payload: PAYLOAD_MB * MIB, max_frame_items: 4096, max_frame_depth: 16, max_frame_string_bytes: MIB });
    const side = 512;
    const preview = await client.request({ op: 'preview', family: 'v1', latent: { dtype: 'float32', shape: [1, 4, side, side], data: new Uint8Array(4 * side * side * 4) } });
    expect(preview).toMatchObject({ ok: true, image: { width: side, height: side } });
    client.close();
  });

  it('refuses msgpack extension types and non-string map keys with bad_request', async () => {
    const client = await TestClient.connect(`ws://127.0.0.1:${serve.port}/ws`);
    const ext = client.waitForEvent((e) => e.ok === false);
    client.sendRaw(packr.pack({ id: 1, op: 'hello', protocol: PROTOCOL_VERSION, when: new Date(0) }));
    expect(await ext).toMatchObject({ id: null, error: { code: 'bad_request', message: expect.stringMatching(/extension type/) } });
    client.events.length = 0;
    const key = client.waitForEvent((e) => e.ok === false);
    client.sendRaw(Uint8Array.of(0x82, 0xa2, 0x69, 0x64, 0x01, 0x01, 0x02));
    expect(await key).toMatchObject({ id: null, error: { code: 'bad_request', message: expect.stringMatching(/keys must be strings/) } });
    client.close();
  });
});
