import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import type { ModelStore } from '../src/store/store.ts';
import { seededData } from './support/conformance.ts';
import type { FakeHub } from './support/fake-hub.ts';
import { heldDownload } from './support/held-download.ts';
import { startTestServer, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';

/** Inference requests whose networks are still downloading, against a hub that holds the bytes back. */
describe('requests waiting for a model download', () => {
  let hub: FakeHub;
  let server: TestServer;
  let release: () => void;

  beforeEach(async () => {
    let store: ModelStore;
    ({ hub, store, release } = await heldDownload());
    server = await startTestServer({ store, limits: { maxJobsPerClient: 2 } });
  });

  afterEach(async () => {
    release();
    await server.close();
    await hub.close();
  });

  const upscale = () => {
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(4 * 64, 3));
    return { op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) };
  };

  it('count against the per-connection limit, and run once the download is done', async () => {
    const client = await TestClient.connect(server.wsUrl);
    const replies = [client.request(upscale()), client.request(upscale()), client.request(upscale())];
    // The hello reply comes after every reply the server sent while reading the three requests.
    expect((await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    const third = await Promise.race([replies[2], Promise.resolve(undefined)]);
    expect(third).toMatchObject({ ok: false, error: { code: 'busy', message: expect.stringMatching(/limit 2/) } });
    release();
    for (const reply of await Promise.all(replies.slice(0, 2))) expect(reply).toMatchObject({ ok: true, latent: { shape: [1, 4, 16, 16] } });
    client.close();
  });

  it('are answered busy when the server shuts down, before the connection closes', async () => {
    const client = await TestClient.connect(server.wsUrl);
    const reply = client.request(upscale());
    expect((await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    const closing = server.close();
    expect(await reply).toMatchObject({ ok: false, error: { code: 'busy', message: expect.stringMatching(/shutting down/) } });
    expect((await client.closed).code).toBe(1001);
    await closing;
  });
});
