import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeLatent } from '../src/latent.ts';
import { META_BOUNDS, PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { VIEWER_PROMPT_CHARS } from '../src/server/viewer-hub.ts';
import { seededData } from './support/conformance.ts';
import { packr, startTestServer, TestClient, wireTensor, type Reply, type TestServer } from './support/server-harness.ts';
import { fetchMetrics, metric } from './support/server-observe.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

/** A v1 preview of `side` x `side` latent pixels: its image has `side * side * 3` bytes. */
function preview(job: string, step: number, total: number, extra: Record<string, unknown> = {}, side = 8): Record<string, unknown> {
  const latent = makeLatent('v1', 'model', [1, 4, side, side], seededData(4 * side * side, step));
  return { op: 'preview', family: 'v1', job, step, total, latent: wireTensor(latent.shape, latent.data), ...extra };
}

function expectBadRequest(reply: Reply, field: RegExp): void {
  expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request' } });
  expect(reply.error.message).toMatch(field);
}

async function watching(server: TestServer): Promise<TestClient> {
  const watcher = await TestClient.connect(server.wsUrl);
  expect((await watcher.request({ op: 'watch' })).ok).toBe(true);
  return watcher;
}

describe('job metadata and job ends', () => {
  let server: TestServer;
  let sender: TestClient;
  let watcher: TestClient;

  beforeAll(async () => {
    server = await startTestServer({ models: [] });
    sender = await TestClient.connect(server.wsUrl);
    expect((await sender.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: 'webui' })).ok).toBe(true);
    watcher = await watching(server);
  });

  afterAll(async () => {
    sender.close();
    watcher.close();
    await server.close();
  });

  it('refuses metadata and ends that are not what the protocol says, naming the field', async () => {
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: 'a prompt' })), /"meta" must be a map/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { prompt: 'p'.repeat(META_BOUNDS.prompt + 1) } })), /"meta\.prompt"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { prompt: 7 } })), /"meta\.prompt"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { model: 'm'.repeat(META_BOUNDS.model + 1) } })), /"meta\.model"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { seed: -1 } })), /"meta\.seed"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { seed: 1.5 } })), /"meta\.seed"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { sampler: 's'.repeat(META_BOUNDS.sampler + 1) } })), /"meta\.sampler"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { steps: 0 } })), /"meta\.steps"/);
    expectBadRequest(await sender.request(preview('m', 1, 5, { meta: { pass: 'third' } })), /"meta\.pass" must be one of "first", "hires"/);
    expectBadRequest(await sender.request({ op: 'end', job: 'm' }), /"outcome"/);
    expectBadRequest(await sender.request({ op: 'end', job: 'm', outcome: 'done' }), /"outcome"/);
    expectBadRequest(await sender.request({ op: 'end', job: 'm', outcome: 'failed', error: 'e'.repeat(META_BOUNDS.error + 1) }), /"error"/);
    expectBadRequest(await sender.request({ op: 'end', job: 'j'.repeat(129), outcome: 'finished' }), /"job"/);
    // Nothing of it reached the viewers.
    expect(watcher.events.filter((e) => e.job?.job === 'm')).toEqual([]);
  });

  it('passes the metadata on to viewers, the prompt on one line and shortened, unknown keys left out', async () => {
    const prompt = `a castle\n\n on a hill,   ${'detailed, '.repeat(40)}🏰`;
    const meta = { prompt, model: 'sd_xl_base_1.0', seed: 4_294_967_295, sampler: 'DPM++ 2M', steps: 30, pass: 'first', cfg: 7, future: { nested: true } };
    expect((await sender.request(preview('meta', 1, 30, { meta }))).ok).toBe(true);
    const { job } = await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'meta');
    expect(job.meta).toEqual({ prompt: expect.any(String), model: 'sd_xl_base_1.0', seed: 4_294_967_295, sampler: 'DPM++ 2M', steps: 30, pass: 'first' });
    expect(job.meta.prompt.length).toBe(VIEWER_PROMPT_CHARS);
    expect(job.meta.prompt.startsWith('a castle on a hill, detailed, detailed,')).toBe(true);
    expect(job.meta.prompt.endsWith('…')).toBe(true);
    expect(job.meta.prompt).not.toMatch(/\s{2}|\n/);

    // A prompt cut at a surrogate pair loses the whole character, never half of it.
    const emoji = `${'x'.repeat(VIEWER_PROMPT_CHARS - 2)}🏰🏰`;
    expect((await sender.request(preview('emoji', 1, 30, { meta: { prompt: emoji } }))).ok).toBe(true);
    const cut = (await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'emoji')).job.meta.prompt as string;
    expect(cut).toBe(`${'x'.repeat(VIEWER_PROMPT_CHARS - 2)}…`);

    // A later preview without metadata keeps what the job had.
    expect((await sender.request(preview('meta', 2, 30))).ok).toBe(true);
    const second = await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'meta' && e.job.step === 2);
    expect(second.job.meta).toEqual(job.meta);
  });

  it('records when the first and the latest step arrived, for the viewer to time the job', async () => {
    const before = Date.now();
    expect((await sender.request(preview('timed', 3, 10))).ok).toBe(true);
    const first = (await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'timed')).job;
    expect(first).toMatchObject({ first_step: 3, step: 3 });
    expect(first.started).toBeGreaterThanOrEqual(before);
    expect(first.stepped).toBe(first.started);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect((await sender.request(preview('timed', 6, 10))).ok).toBe(true);
    const later = (await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'timed' && e.job.step === 6)).job;
    expect(later).toMatchObject({ first_step: 3, started: first.started });
    expect(later.stepped).toBeGreaterThan(first.stepped);
  });

  it('ends a job as its client says: finished, interrupted, or failed with its message', async () => {
    for (const [job, outcome] of [
      ['ends-finished', 'finished'],
      ['ends-interrupted', 'interrupted'],
      ['ends-failed', 'failed'],
    ]) {
      expect((await sender.request(preview(job, 2, 10))).ok).toBe(true);
      const error = outcome === 'failed' ? { error: 'OutOfMemoryError: CUDA out of memory' } : {};
      expect(await sender.request({ op: 'end', job, outcome, ...error })).toMatchObject({ ok: true, ended: true });
      const { job: info } = await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === job);
      expect(info).toMatchObject({ state: 'finished', outcome, step: 2, total: 10, error: error.error ?? null });
      expect(info.updated).toBeGreaterThanOrEqual(info.stepped);
    }
    // A step reaching the total finishes a job without an end; the client's end then changes nothing.
    expect((await sender.request(preview('ends-by-step', 10, 10))).ok).toBe(true);
    expect((await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'ends-by-step')).job).toMatchObject({ state: 'finished', outcome: 'finished' });
    const events = watcher.events.length;
    expect(await sender.request({ op: 'end', job: 'ends-by-step', outcome: 'finished' })).toMatchObject({ ok: true, ended: true });
    // An error message only goes with `failed`; a job nobody published is not ended.
    expect((await sender.request(preview('ends-with-words', 2, 10))).ok).toBe(true);
    expect(await sender.request({ op: 'end', job: 'ends-with-words', outcome: 'interrupted', error: 'ignored' })).toMatchObject({ ok: true, ended: true });
    expect((await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === 'ends-with-words')).job).toMatchObject({ outcome: 'interrupted', error: null });
    expect(watcher.events.slice(events).filter((e) => e.job?.job === 'ends-by-step')).toEqual([]);
    expect(await sender.request({ op: 'end', job: 'never-seen', outcome: 'finished' })).toEqual({ id: expect.anything(), ok: true, ended: false });
  });

  it('applies an end after the preview of its job that came just before it, and answers none with noreply', async () => {
    const raw = await RawWebSocket.connect(server.server.port);
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 4));
    // One TCP write: the server reads both frames before it draws the preview.
    raw.write(
      Buffer.concat(
        [
          { id: 'p', op: 'preview', family: 'v1', job: 'ordered', step: 4, total: 10, noreply: true, latent: wireTensor(latent.shape, latent.data) },
          { id: 'e', op: 'end', job: 'ordered', outcome: 'interrupted', noreply: true },
          { id: 'h', op: 'hello', protocol: PROTOCOL_VERSION },
        ].map((message) => RawWebSocket.frame(packr.pack(message))),
      ),
    );
    const [reply] = await raw.waitForMessages(1);
    expect(reply).toMatchObject({ id: 'h', ok: true });
    await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === 'ordered');
    const events = watcher.events.filter((e) => e.job?.job === 'ordered');
    expect(events.map((e) => [e.event, e.job.state, e.job.outcome])).toEqual([
      ['preview', 'running', null],
      ['job', 'finished', 'interrupted'],
    ]);
    // Nothing else came back for the two noreply frames.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(raw.messages.map((m) => m.id)).toEqual(['h']);
    raw.close();
  });

  it('shows the running jobs of a client that goes away as disconnected, and keeps how finished ones ended', async () => {
    const leaving = await TestClient.connect(server.wsUrl);
    expect((await leaving.request(preview('leaving-running', 2, 10))).ok).toBe(true);
    expect((await leaving.request(preview('leaving-failed', 2, 10))).ok).toBe(true);
    expect((await leaving.request({ op: 'end', job: 'leaving-failed', outcome: 'failed', error: 'boom' })).ok).toBe(true);
    await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === 'leaving-failed');
    leaving.close();
    const { job } = await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === 'leaving-running');
    expect(job).toMatchObject({ state: 'finished', outcome: 'disconnected' });
    const late = await TestClient.connect(server.wsUrl);
    const kept = (await late.request({ op: 'watch' })).jobs as Reply[];
    late.close();
    expect(kept.find((j) => j.job.job === 'leaving-failed')?.job).toMatchObject({ outcome: 'failed', error: 'boom' });
    expect(kept.find((j) => j.job.job === 'leaving-running')?.job).toMatchObject({ outcome: 'disconnected' });
  });
});

describe('a job run again under the same name', () => {
  it('starts afresh: its start and first step are the new run\'s, and no TAESD picture of the earlier run is shown with it', async () => {
    // The stand-in TAESD decoders are among the test server's weights by default.
    const server = await startTestServer();
    try {
      const watcher = await watching(server);
      const sender = await TestClient.connect(server.wsUrl);
      const latent = (seed: number) => makeLatent('xl', 'model', [1, 4, 32, 32], seededData(4 * 32 * 32, seed));
      const send = (step: number) => sender.request({ op: 'preview', family: 'xl', job: 'again', step, total: 10, latent: wireTensor([1, 4, 32, 32], latent(step).data) });
      expect((await send(4)).ok).toBe(true);
      await watcher.waitForEvent((e) => e.event === 'taesd' && e.step === 4);
      // Step 5's decode takes far longer than the next request: step 1 of a new run comes while it runs.
      expect((await send(5)).ok).toBe(true);
      expect((await send(1)).ok).toBe(true);
      const restarted = (await watcher.waitForEvent((e) => e.event === 'preview' && e.job.step === 1)).job;
      const earlier = watcher.events.find((e) => e.event === 'preview' && e.job.step === 4)!.job;
      expect(restarted.first_step).toBe(1);
      expect(restarted.started).toBeGreaterThanOrEqual(earlier.stepped);
      await watcher.waitForEvent((e) => e.event === 'taesd' && e.step === 1);
      // Whatever came before the new run, nothing of a later step than its own comes after it.
      const afterRestart = watcher.events.slice(watcher.events.findIndex((e) => e.event === 'preview' && e.job.step === 1));
      expect(afterRestart.filter((e) => e.event === 'taesd').map((e) => e.step)).toEqual([1]);
      const late = await TestClient.connect(server.wsUrl);
      const [kept] = (await late.request({ op: 'watch' })).jobs;
      expect(kept.taesd.step).toBe(1);
      late.close();
      sender.close();
      watcher.close();
    } finally {
      await server.close();
    }
  });
});

describe('a job nobody ends', () => {
  it('is shown as stalled once no preview came for the idle time', async () => {
    const server = await startTestServer({ models: [], previewIdleMs: 50 });
    try {
      const sender = await TestClient.connect(server.wsUrl);
      expect((await sender.request(preview('quiet', 2, 10))).ok).toBe(true);
      const watcher = await watching(server);
      // The server sweeps every few seconds.
      const { job } = await watcher.waitForEvent((e) => e.event === 'job' && e.job.job === 'quiet');
      expect(job).toMatchObject({ state: 'finished', outcome: 'stalled' });
      sender.close();
      watcher.close();
    } finally {
      await server.close();
    }
  });
});

describe('the bytes the viewer hub keeps', () => {
  it('count the metadata with the images: a job with a long prompt makes room like a larger image', async () => {
    const side = 16;
    const image = side * side * 3;
    const meta = { prompt: 'p'.repeat(1000), model: 'model', sampler: 'Euler' };
    const metaBytes = VIEWER_PROMPT_CHARS - 1 + Buffer.byteLength('…') + 'model'.length + 'Euler'.length;
    // Room for two images and a little more, not for two images with their metadata.
    const server = await startTestServer({ models: [], limits: { maxPreviewBytes: 2 * image + metaBytes } });
    try {
      const sender = await TestClient.connect(server.wsUrl);
      expect((await sender.request(preview('first', 1, 10, { meta }, side))).ok).toBe(true);
      expect(metric(await fetchMetrics(server.server.url), 'latent_bridge_preview_bytes')).toBe(image + metaBytes);
      const watcher = await watching(server);
      expect((await sender.request(preview('second', 1, 10, { meta }, side))).ok).toBe(true);
      await watcher.waitForEvent((e) => e.event === 'remove' && e.key.endsWith('/first'));
      expect(metric(await fetchMetrics(server.server.url), 'latent_bridge_preview_bytes')).toBe(image + metaBytes);
      // Without metadata two jobs fit.
      expect((await sender.request(preview('third', 1, 10, {}, side))).ok).toBe(true);
      await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'third');
      expect(metric(await fetchMetrics(server.server.url), 'latent_bridge_preview_jobs')).toBe(2);
      sender.close();
      watcher.close();
    } finally {
      await server.close();
    }
  });
});
