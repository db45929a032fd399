import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import type { ModelStore } from '../src/store/store.ts';
import { seededData } from './support/conformance.ts';
import type { FakeHub } from './support/fake-hub.ts';
import { heldDownload } from './support/held-download.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { packr, startTestServer, testStore, TestClient, wireTensor, type TestServer } from './support/server-harness.ts';
import { rssBytes } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

const MIB = 1024 * 1024;

describe('requests in flight on one connection, of every kind', () => {
  const BOUND = 6;
  let hub: FakeHub;
  let server: TestServer;
  let release: () => void;

  beforeAll(async () => {
    // Upscales wait for a download the hub holds back, so they stay in flight as long as the test wants.
    let store: ModelStore;
    ({ hub, store, release } = await heldDownload());
    server = await startTestServer({ store, limits: { maxRequestsPerClient: BOUND, maxJobsPerClient: 100 } });
  });
  afterAll(async () => {
    release();
    await server.close();
    await hub.close();
  });

  it(`are bounded: past ${BOUND}, hello, models, watch, preview and inference are all answered busy, until replies free the slots`, async () => {
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(4 * 64, 3));
    const upscale = { op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) };
    const client = await TestClient.connect(server.wsUrl);
    const held = Array.from({ length: BOUND }, () => client.request(upscale));
    const refused = await Promise.all([
      client.request(upscale),
      client.request({ op: 'hello', protocol: PROTOCOL_VERSION }),
      client.request({ op: 'models' }),
      client.request({ op: 'watch' }),
      client.request({ op: 'preview', family: 'v1', latent: wireTensor(latent.shape, latent.data) }),
    ]);
    for (const reply of refused) expect(reply).toMatchObject({ ok: false, error: { code: 'busy', message: expect.stringMatching(`${BOUND} requests in flight \\(limit ${BOUND}`) } });
    // Another connection has its own allowance.
    const other = await TestClient.connect(server.wsUrl);
    expect(await other.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true, limits: { max_requests_per_client: BOUND } });
    other.close();

    release();
    for (const reply of await Promise.all(held)) expect(reply).toMatchObject({ ok: true, latent: { shape: [1, 4, 16, 16] } });
    expect(await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true });
    client.close();
  });
});

describe('models requests', () => {
  let server: TestServer;
  let listings = 0;
  beforeAll(async () => {
    const store = testStore(['upscaler-v1-x2.0']);
    const list = store.list.bind(store);
    store.list = () => {
      listings++;
      return list();
    };
    server = await startTestServer({ store });
  });
  afterAll(() => server.close());

  it('share one listing, whether they come together or one after another', async () => {
    const raw = await RawWebSocket.connect(server.server.port);
    raw.write(Buffer.concat(Array.from({ length: 200 }, (_, id) => RawWebSocket.frame(packr.pack({ id, op: 'models' })))));
    const replies = await raw.waitForMessages(200);
    const answered = replies.filter((r) => r.ok);
    expect(answered.length).toBeGreaterThan(0);
    for (const reply of answered) expect(reply.models).toEqual(answered[0].models);
    const client = await TestClient.connect(server.wsUrl);
    for (let i = 0; i < 5; i++) expect((await client.request({ op: 'models' })).models).toEqual(answered[0].models);
    expect(listings).toBe(1);
    client.close();
    raw.close();
  });
});

describe('a flood of cheap requests in one write', () => {
  let serve: ServeProcess;
  beforeAll(async () => {
    serve = await spawnServe(['--port', '0', '--offline', '--device', 'cpu', '--models', makeModelsDir()], isolatedEnv());
  });
  afterAll(() => {
    serve.child.kill('SIGKILL');
  });

  it('3000 models requests: each answered once, past the bound with busy, at almost no memory', async () => {
    const raw = await RawWebSocket.connect(serve.port);
    const before = rssBytes(serve.child.pid as number);
    raw.write(Buffer.concat(Array.from({ length: 3000 }, (_, id) => RawWebSocket.frame(packr.pack({ id, op: 'models' })))));
    const replies = await raw.waitForMessages(3000);
    expect(replies.map((r) => r.id).sort((a, b) => a - b)).toEqual(Array.from({ length: 3000 }, (_, id) => id));
    const busy = replies.filter((r) => !r.ok);
    for (const reply of busy) expect(reply.error).toMatchObject({ code: 'busy', message: expect.stringMatching(/limit 32, --max-requests-per-client/) });
    // The bound is per moment, not per write: a write arrives in a few reads, and listings finish in between.
    expect(busy.length).toBeGreaterThan(3000 * 0.9);
    for (const reply of replies.filter((r) => r.ok)) expect(reply.models.length).toBeGreaterThan(10);
    // It used to cost about 0.9 GiB.
    expect(rssBytes(serve.child.pid as number) - before).toBeLessThan(96 * MIB);
    raw.close();
  });
});
