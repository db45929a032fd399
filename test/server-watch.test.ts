import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import { seededData } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { packr, startTestServer, TestClient, wireTensor, type Reply } from './support/server-harness.ts';
import { fetchMetrics, metric, rssBytes } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

const MIB = 1024 * 1024;

/** A preview request for a v1 latent of `side` x `side`: its image has `side * side * 3` bytes. */
function preview(side: number, job: string, step: number, total: number): Record<string, unknown> {
  const latent = makeLatent('v1', 'model', [1, 4, side, side], seededData(4 * side * side, side));
  return { op: 'preview', family: 'v1', job, step, total, latent: wireTensor(latent.shape, latent.data) };
}

function imageBytes(jobs: Reply[]): number {
  return jobs.reduce((sum, { image }) => sum + image.data.byteLength, 0);
}

describe('kept previews and watch snapshots', () => {
  let serve: ServeProcess;
  let base: string;
  beforeAll(async () => {
    serve = await spawnServe(['--port', '0', '--offline', '--device', 'cpu', '--models', makeModelsDir([]), '--max-preview-mb', '1'], isolatedEnv());
    base = `http://127.0.0.1:${serve.port}`;
  });
  afterAll(() => {
    serve.child.kill('SIGKILL');
  });

  it('are bounded in bytes: the oldest finished job goes first, then the oldest running one', async () => {
    const publisher = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    // 128 x 128 images of 48 KiB: 1 MiB holds 21 of them. Jobs other tests left are older, so they go before these.
    expect((await publisher.request(preview(128, 'bytes-oldest-running', 1, 10))).ok).toBe(true);
    expect((await publisher.request(preview(128, 'bytes-finished', 10, 10))).ok).toBe(true);
    for (let i = 0; i < 20; i++) expect((await publisher.request(preview(128, `bytes-${i}`, 1, 10))).ok).toBe(true);
    const watcher = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    const { jobs } = await watcher.request({ op: 'watch' });
    const mine = jobs.filter((j: Reply) => j.job.job.startsWith('bytes-'));
    expect(mine.map((j: Reply) => j.job.job)).toEqual(['bytes-oldest-running', ...Array.from({ length: 20 }, (_, i) => `bytes-${i}`)]);
    expect(imageBytes(jobs)).toBeLessThanOrEqual(MIB);

    expect((await publisher.request(preview(128, 'bytes-20', 1, 10))).ok).toBe(true);
    await watcher.waitForEvent((e) => e.event === 'remove' && e.key.endsWith('/bytes-oldest-running'));
    const metrics = await fetchMetrics(base);
    expect(metric(metrics, 'latent_bridge_preview_bytes')).toBe(21 * 128 * 128 * 3);
    expect(metric(metrics, 'latent_bridge_preview_jobs')).toBe(21);
    publisher.close();
    watcher.close();
  });

  it('never hold an image bigger than the whole budget: it is answered, not kept or pushed', async () => {
    const publisher = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    const watcher = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    await watcher.request({ op: 'watch' });
    expect(await publisher.request(preview(1000, 'huge', 1, 10))).toMatchObject({ ok: true, image: { width: 1000, height: 1000 } });
    expect((await publisher.request(preview(8, 'small', 1, 10))).ok).toBe(true);
    // Pushes reach a watcher in order: once the later one is there, the huge one never comes.
    await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'small');
    expect(watcher.events.filter((e) => e.job?.job === 'huge')).toEqual([]);
    expect(metric(await fetchMetrics(base), 'latent_bridge_previews_total', '{outcome="not_kept"}')).toBe(1);
    expect(metric(await fetchMetrics(base), 'latent_bridge_preview_bytes')).toBeLessThanOrEqual(MIB);
    publisher.close();
    watcher.close();
  });

  it('come once per connection: of 8 watch requests sent together, one is answered with a snapshot, the others refused', async () => {
    const publisher = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    for (let i = 0; i < 5; i++) expect((await publisher.request(preview(256, `big-${i}`, 1, 10))).ok).toBe(true);
    const before = rssBytes(serve.child.pid as number);
    const raw = await RawWebSocket.connect(serve.port);
    raw.socket.pause();
    raw.write(Buffer.concat(Array.from({ length: 8 }, (_, id) => RawWebSocket.frame(packr.pack({ id, op: 'watch' })))));
    raw.socket.resume();
    const replies = await raw.waitForMessages(8);
    expect(replies[0]).toMatchObject({ id: 0, ok: true });
    expect(imageBytes(replies[0].jobs)).toBeGreaterThan(MIB / 2);
    for (const reply of replies.slice(1)) expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request', message: expect.stringMatching(/already watches/) } });
    expect(rssBytes(serve.child.pid as number) - before).toBeLessThan(64 * MIB);
    raw.close();
    publisher.close();
  });
});

describe('a connection with more unread replies than it may have', () => {
  it('gets busy for what it sends next, without the work being done: no snapshot is built for it', async () => {
    const server = await startTestServer({ models: [], limits: { maxClientBuffer: MIB, maxPreviewBytes: 16 * MIB } });
    try {
      const publisher = await TestClient.connect(server.wsUrl);
      // 16 images of 512 x 512 (768 KiB each): a 12 MiB snapshot, more than the network takes at once.
      for (let i = 0; i < 16; i++) expect((await publisher.request(preview(512, `large-${i}`, 1, 10))).ok).toBe(true);
      const raw = await RawWebSocket.connect(server.server.port);
      const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 1));
      raw.write(
        Buffer.concat(
          [
            { id: 'watch', op: 'watch' },
            { id: 'hello', op: 'hello', protocol: PROTOCOL_VERSION },
            { id: 'models', op: 'models' },
            { id: 'preview', op: 'preview', family: 'v1', latent: wireTensor(latent.shape, latent.data) },
          ].map((request) => RawWebSocket.frame(packr.pack(request))),
        ),
      );
      const replies = await raw.waitForMessages(4);
      expect(replies[0]).toMatchObject({ id: 'watch', ok: true });
      expect(replies[0].jobs).toHaveLength(16);
      for (const reply of replies.slice(1)) expect(reply).toMatchObject({ ok: false, error: { code: 'busy', message: expect.stringMatching(/bytes of replies to this connection are still unread/) } });
      // Once it has read them, it is served again.
      raw.write(RawWebSocket.frame(packr.pack({ id: 'again', op: 'hello', protocol: PROTOCOL_VERSION })));
      expect((await raw.waitForMessages(5))[4]).toMatchObject({ id: 'again', ok: true });
      raw.close();
      publisher.close();
    } finally {
      await server.close();
    }
  });
});
