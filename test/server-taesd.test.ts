import sharp from 'sharp';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeJpeg } from '../src/image-encoding.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { seededData } from './support/conformance.ts';
import { STAND_INS } from './support/models-dir.ts';
import { packr, startTestServer, TestClient, wireTensor, type Reply, type TestServer } from './support/server-harness.ts';

const servers: TestServer[] = [];
const clients: TestClient[] = [];
afterEach(async () => {
  for (const client of clients.splice(0)) client.close();
  for (const server of servers.splice(0)) await server.close();
});

async function start(models?: readonly string[]): Promise<TestServer> {
  const server = await startTestServer(models === undefined ? {} : { models });
  servers.push(server);
  return server;
}

async function connect(server: TestServer): Promise<TestClient> {
  const client = await TestClient.connect(server.wsUrl);
  clients.push(client);
  return client;
}

function xlLatent(seed: number, side = 8): Latent {
  return makeLatent('xl', 'model', [1, 4, side, side], seededData(4 * side * side, seed, 2));
}

function preview(latent: Latent, job: string, step: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { op: 'preview', family: latent.family, job, step, total: 10, latent: wireTensor(latent.shape, latent.data), ...extra };
}

/** The JPEG's pixels as RGB bytes. */
async function pixels(image: { format: string; data: Uint8Array }): Promise<Uint8Array> {
  expect(image.format).toBe('jpeg');
  const { data } = await sharp(Buffer.from(image.data)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return new Uint8Array(data);
}

function meanAbsDifference(a: Uint8Array, b: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < a.length; i++) sum += Math.abs(a[i] - b[i]);
  return sum / a.length;
}

const taesdOf = (client: TestClient, job: string) => client.events.filter((e) => e.event === 'taesd' && e.job === job);

describe('TAESD previews', () => {
  it('reach the viewers and the client that asked, as JPEG at full size, equal to the decoder picture', async () => {
    const server = await start();
    const viewer = await connect(server);
    expect((await viewer.request({ op: 'watch' })).ok).toBe(true);
    const sender = await connect(server);
    const latent = xlLatent(1);
    expect((await sender.request(preview(latent, 'cat', 3, { taesd: true }))).ok).toBe(true);
    const pushed = await viewer.waitForEvent((e) => e.event === 'taesd');
    const own = await sender.waitForEvent((e) => e.event === 'taesd');
    expect(pushed).toMatchObject({ key: expect.stringMatching(/\/cat$/), step: 3, image: { format: 'jpeg', width: 64, height: 64 } });
    expect(own).toMatchObject({ job: 'cat', step: 3, image: { format: 'jpeg', width: 64, height: 64 } });
    // Exactly the decoder's picture, encoded as JPEG: the same bytes as encoding it here.
    const decoded = await server.engine.decodePreview(latent, {});
    expect(Buffer.from(pushed.image.data).equals(Buffer.from((await encodeJpeg(decoded)).data))).toBe(true);
    expect(Buffer.from(own.image.data).equals(Buffer.from(pushed.image.data))).toBe(true);
    // Lossy, but close (the stand-in decoder's random weights draw noise, JPEG's worst case).
    expect(meanAbsDifference(await pixels(pushed.image), decoded.data)).toBeLessThan(16);
    // A viewer that comes later gets it in its snapshot.
    const late = await connect(server);
    const snapshot = await late.request({ op: 'watch' });
    expect(snapshot.jobs[0]).toMatchObject({ taesd: { step: 3, image: { format: 'jpeg', width: 64 } } });
  });

  it('cost nothing when nobody looks: no viewer and no client asking, no decode', async () => {
    const server = await start();
    const sender = await connect(server);
    for (let step = 1; step <= 3; step++) expect((await sender.request(preview(xlLatent(step), 'unseen', step))).ok).toBe(true);
    await sender.request({ op: 'hello', protocol: PROTOCOL_VERSION });
    const metrics = await (await fetch(`${server.server.url}/metrics`)).text();
    expect(metrics).not.toMatch(/latent_bridge_taesd_previews_total\{outcome="decoded"\}/);
    expect(server.engine.loadedModels()).not.toContain('taesd-decoder-xl');
  });

  it('newest step wins: while a decode runs, newer steps replace each other, and linear previews never wait for it', async () => {
    const server = await start();
    const sender = await connect(server);
    // 64x64 latents: each decode takes far longer than drawing and answering nine linear previews.
    const steps = Array.from({ length: 10 }, (_, i) => xlLatent(10 + i, 64));
    for (let step = 1; step <= 10; step++) expect((await sender.request(preview(steps[step - 1], 'race', step, { taesd: true }))).ok).toBe(true);
    const linearDone = sender.events.filter((e) => e.event === 'taesd').length;
    await sender.waitForEvent((e) => e.event === 'taesd' && e.step === 10);
    const decodedSteps = taesdOf(sender, 'race').map((e) => e.step);
    expect(linearDone).toBe(0);
    expect(decodedSteps).toEqual([1, 10]);
    const metrics = await (await fetch(`${server.server.url}/metrics`)).text();
    // Steps 3 to 10 each replaced the one waiting before them.
    expect(metrics).toMatch(/latent_bridge_taesd_previews_total\{outcome="superseded"\} 8/);
  });

  it('wait behind inference requests: a hires request is delayed by at most the one decode already running', async () => {
    const server = await start();
    const sender = await connect(server);
    const hires = { op: 'hires', from: 'xl', to: 'v1', size: [32, 32], latent: wireTensor([1, 4, 16, 16], seededData(4 * 256, 30)) };
    // Its networks loaded beforehand, so the request joins the queue at once.
    expect((await sender.request(hires)).ok).toBe(true);
    expect((await sender.request(preview(xlLatent(31, 64), 'busy', 1, { taesd: true }))).ok).toBe(true);
    expect((await sender.request(preview(xlLatent(32, 64), 'busy', 2, { taesd: true }))).ok).toBe(true);
    const order: string[] = [];
    const reply = sender.request(hires).then((r: Reply) => {
      order.push('hires');
      return r;
    });
    await sender.waitForEvent((e) => e.event === 'taesd' && e.step === 2);
    order.push('taesd step 2');
    expect((await reply).ok).toBe(true);
    // Step 1's decode may have been running when the request came; step 2's waited for the request.
    expect(order).toEqual(['hires', 'taesd step 2']);
    expect(taesdOf(sender, 'busy').map((e) => e.step)).toEqual([1, 2]);
  });

  it('run only when no request is waiting: a request queued behind another goes before a waiting decode', async () => {
    const server = await start();
    const sender = await connect(server);
    const small = { op: 'hires', from: 'xl', to: 'v1', size: [32, 32], latent: wireTensor([1, 4, 16, 16], seededData(4 * 256, 60)) };
    const big = { op: 'hires', from: 'xl', to: 'v1', size: [256, 256], latent: wireTensor([1, 4, 128, 128], seededData(4 * 128 * 128, 61)) };
    // Networks and decoder loaded beforehand, so nothing below waits for a load.
    expect((await sender.request(small)).ok).toBe(true);
    expect((await sender.request(preview(xlLatent(62), 'warm', 1, { taesd: true }))).ok).toBe(true);
    await sender.waitForEvent((e) => e.event === 'taesd' && e.job === 'warm');
    const order: string[] = [];
    const first = sender.request(big).then(() => order.push('first request'));
    // While the first request computes (a second or more), a decode and then a request queue up.
    expect((await sender.request(preview(xlLatent(63), 'queued', 1, { taesd: true }))).ok).toBe(true);
    const second = sender.request(small).then(() => order.push('second request'));
    await sender.waitForEvent((e) => e.event === 'taesd' && e.job === 'queued');
    order.push('decode');
    await Promise.all([first, second]);
    expect(order).toEqual(['first request', 'second request', 'decode']);
  });

  it('without the decoder weights, the client that asked is told once which file is missing and how to get it; linear previews go on', async () => {
    const server = await start(Object.keys(STAND_INS).filter((name) => name !== 'taesd-decoder-xl'));
    const sender = await connect(server);
    for (let step = 1; step <= 3; step++) expect((await sender.request(preview(xlLatent(40 + step), 'offline', step, { taesd: true }))).ok).toBe(true);
    const told = await sender.waitForEvent((e) => e.event === 'taesd' && e.error !== undefined);
    expect(told.error.code).toBe('model_unavailable');
    expect(told.error.message).toMatch(/taesdxl_decoder\.safetensors/);
    expect(told.error.message).toMatch(/latent-bridge models pull taesd-decoder-xl/);
    expect((await sender.request(preview(xlLatent(44), 'offline', 4, { taesd: true }))).image.width).toBe(8);
    expect(taesdOf(sender, 'offline')).toHaveLength(1);
  });

  it('go only to the client that asked when its previews are not published', async () => {
    const server = await start();
    const viewer = await connect(server);
    expect((await viewer.request({ op: 'watch' })).ok).toBe(true);
    const sender = await connect(server);
    sender.ws.send(packr.pack({ ...preview(xlLatent(50), 'private', 1, { taesd: true, publish: false, noreply: true }), id: 'quiet' }));
    const own = await sender.waitForEvent((e) => e.event === 'taesd' && e.job === 'private');
    expect(own).toMatchObject({ step: 1, shape: [1, 4, 8, 8], grid: false, image: { format: 'jpeg', width: 64 } });
    expect((await viewer.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    expect(viewer.events.filter((e) => e.event !== undefined)).toEqual([]);
    const nobody = await sender.request(preview(xlLatent(51), 'nobody', 1, { publish: false, noreply: true }));
    expect(nobody).toMatchObject({ ok: false, error: { code: 'bad_request', message: expect.stringMatching(/would reach nobody/) } });
  });
});
