import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import { seededData } from './support/conformance.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';
import { packr, startTestServer, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';

const PREVIEWS = 300;

describe('a client that stops reading', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ models: [], limits: { maxClientBuffer: 256 * 1024 } });
  });
  afterAll(() => server.close());

  it('holds up only itself, and gets every reply once it reads again', async () => {
    const latent = makeLatent('v1', 'model', [1, 4, 128, 128], seededData(4 * 128 * 128, 5));
    const slow = await RawWebSocket.connect(server.server.port);
    slow.socket.pause();
    // Each reply is a 128x128 RGB image (48 KiB): far more than the server lets wait unread.
    for (let id = 0; id < PREVIEWS; id++) {
      slow.write(RawWebSocket.frame(packr.pack({ id, op: 'preview', family: 'v1', job: `job-${id}`, latent: wireTensor(latent.shape, latent.data) })));
    }
    const other = await TestClient.connect(server.wsUrl);
    for (let i = 0; i < 5; i++) expect((await other.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    const preview = await other.request({ op: 'preview', family: 'v1', latent: wireTensor(latent.shape, latent.data) });
    expect(preview).toMatchObject({ ok: true, image: { width: 128, height: 128 } });
    other.close();

    slow.socket.resume();
    const replies = await slow.waitForMessages(PREVIEWS);
    expect(replies.map((r) => r.id)).toEqual(Array.from({ length: PREVIEWS }, (_, id) => id));
    for (const reply of replies) expect(reply).toMatchObject({ ok: true, image: { width: 128, height: 128 } });
    slow.close();
  });
});
