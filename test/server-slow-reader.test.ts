import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import { DEFAULT_LIMITS } from '../src/server/options.ts';
import { seededData } from './support/conformance.ts';
import { fetchMetrics, metric } from './support/server-observe.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';
import { packr, startTestServer, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';

const PREVIEWS = 300;
const MAX_CLIENT_BUFFER = 256 * 1024;
const MAX_IN_FLIGHT = DEFAULT_LIMITS.maxRequestsPerClient;
/** A 128x128 RGB image and its reply's few other bytes. */
const REPLY_BYTES = 128 * 128 * 3 + 256;

describe('a client that stops reading', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ models: [], limits: { maxClientBuffer: MAX_CLIENT_BUFFER } });
  });
  afterAll(() => server.close());

  it('holds up only itself, makes the server hold no more than its bound, and gets every reply once it reads again', async () => {
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
    // Reading stops once the unsent replies pass the bound; only requests already in flight may add theirs.
    const peak = metric(await fetchMetrics(server.server.url), 'latent_bridge_reply_buffer_peak_bytes');
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(MAX_CLIENT_BUFFER + MAX_IN_FLIGHT * REPLY_BYTES);
    slow.close();
  });
});
