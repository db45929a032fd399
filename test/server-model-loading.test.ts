import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { specsNamed } from '../src/store/registry.ts';
import { ModelStore } from '../src/store/store.ts';
import { CONFORMANCE_DIR, seededData } from './support/conformance.ts';
import { FakeHub, hostModel, pinnedTo } from './support/fake-hub.ts';
import { STAND_INS } from './support/models-dir.ts';
import { startTestServer, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';

/** Inference requests whose networks are still downloading, against a hub that holds the bytes back. */
describe('requests waiting for a model download', () => {
  let hub: FakeHub;
  let server: TestServer;
  let release: () => void;

  beforeEach(async () => {
    hub = await FakeHub.start();
    const [realSpec] = specsNamed(['upscaler-v1-x2.0']);
    const weights = readFileSync(path.join(CONFORMANCE_DIR, `${STAND_INS[realSpec.name]}.weights.safetensors`));
    // Downloads must match the registry's pin: the stand-in weights play the pinned file.
    const spec = pinnedTo(realSpec, weights);
    hostModel(hub, spec, weights);
    release = hub.holdTransfers();
    const work = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-loading-'));
    const store = new ModelStore({
      modelDirs: [path.join(work, 'models')],
      hubUrl: hub.url,
      cacheDir: path.join(work, 'hub'),
      stateDir: path.join(work, 'state'),
      offline: false,
      progress: silentProgress,
      registry: [spec],
    });
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
