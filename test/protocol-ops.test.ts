import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { FAMILIES, FAMILY_NAMES } from '../src/families.ts';
import { makeLatent } from '../src/latent.ts';
import { DEFAULT_WORK_LIMITS } from '../src/limits.ts';
import { renderPreview } from '../src/preview.ts';
import { OPS, PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { writePlan } from '../src/protocol/wire-plan.ts';
import { decodeFloats, encodeFloats } from '../src/tensor.ts';
import { conformanceCase, conformanceIO, countOutOfTolerance, seededData } from './support/conformance.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';
import { f32Values, packr, planSteps, startTestServer, TestClient, wireTensor, type Reply, type TestServer } from './support/server-harness.ts';

let server: TestServer;
let client: TestClient;

beforeAll(async () => {
  // Every stand-in except the SDXL x2.0 upscaler, which stays missing for the model_unavailable case.
  server = await startTestServer({
    models: ['upscaler-v1-x2.0', 'upscaler-v1-x1.5', 'upscaler-v1-x1.25', 'upscaler-xl-x1.5', 'upscaler-xl-x1.25', 'interposer-xl-to-v1', 'interposer-v1-to-v3', 'interposer-fx-to-xl', 'interposer-ca-to-v1'],
    limits: { maxPayload: 1024 * 1024, maxElements: 4 * 128 * 128 },
  });
  client = await TestClient.connect(server.wsUrl);
});

afterAll(async () => {
  client.close();
  await server.close();
});

function expectError(reply: Reply, code: string, pattern?: RegExp): void {
  expect(reply.ok).toBe(false);
  expect(reply.error.code).toBe(code);
  if (pattern) expect(reply.error.message).toMatch(pattern);
}

function v1Latent(h: number, w: number, seed = 1) {
  return makeLatent('v1', 'model', [1, 4, h, w], seededData(4 * h * w, seed));
}

describe('hello, models, health and metrics', () => {
  it('hello answers with the protocol, server, device, families and ops', async () => {
    const reply = await client.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: 'vitest' });
    expect(reply).toMatchObject({ ok: true, protocol: PROTOCOL_VERSION, server: 'latent-bridge', version: 'test', device: 'cpu' });
    expect(reply.families).toEqual(FAMILY_NAMES.map((name) => ({ name, label: FAMILIES[name].label, channels: FAMILIES[name].channels, downscale: FAMILIES[name].downscale })));
    expect(reply.ops).toEqual([...OPS]);
    expect(reply.limits).toMatchObject({ max_payload: 1024 * 1024, max_elements: 4 * 128 * 128 });
  });

  it('echoes string ids as well as integer ones', async () => {
    expect((await client.request({ id: 'req-α', op: 'hello', protocol: PROTOCOL_VERSION })).id).toBe('req-α');
  });

  it('models lists every network, present or missing with a reason', async () => {
    const reply = await client.request({ op: 'models' });
    expect(reply.ok).toBe(true);
    const byName = new Map(reply.models.map((m: Reply) => [m.name, m]));
    expect(byName.get('upscaler-v1-x2.0')).toMatchObject({ present: true, kind: 'upscaler', from: 'v1', factor: 2 });
    expect(byName.get('upscaler-xl-x2.0')).toMatchObject({ present: false });
    expect((byName.get('upscaler-xl-x2.0') as Reply).reason).toMatch(/.+/);
  });

  it('GET /healthz and /metrics report state', async () => {
    await client.request({ op: 'hello', protocol: PROTOCOL_VERSION });
    await client.request({ op: 'models' });
    const health = await (await fetch(`${server.server.url}/healthz`)).json();
    expect(health).toMatchObject({ ok: true, server: 'latent-bridge', protocol: PROTOCOL_VERSION, device: 'cpu' });
    expect(Array.isArray(health.models_loaded)).toBe(true);
    const metrics = await (await fetch(`${server.server.url}/metrics`)).text();
    expect(metrics).toMatch(/^latent_bridge_requests_total\{op="hello"\} \d+$/m);
    expect(metrics).toMatch(/^latent_bridge_queue_depth 0$/m);
    expect(metrics).toMatch(/^latent_bridge_request_duration_seconds_count\{op="models"\} \d+$/m);
    expect((await fetch(`${server.server.url}/nothing`)).status).toBe(404);
    expect((await fetch(`${server.server.url}/healthz`, { method: 'POST' })).status).toBe(405);
  });
});

describe('inference ops', () => {
  it('upscale at a trained factor equals the reference network, through model space', async () => {
    const { input, output } = await conformanceIO(conformanceCase('upscaler-x2.0'));
    const scale = FAMILIES.v1.scale;
    const reply = await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(input.shape, input.data.map((v) => v * scale)) });
    expect(reply.ok).toBe(true);
    expect(planSteps(reply.plan)).toEqual(['upscaler-v1-x2.0 24x24 -> 48x48']);
    expect(reply.latent.dtype).toBe('float32');
    expect(reply.latent.shape).toEqual([1, 4, 48, 48]);
    const got = f32Values(reply.latent.data).map((v) => v / scale);
    expect(countOutOfTolerance(got, output.data)).toBe(0);
  });

  it('upscale to an exact size gives what the engine gives', async () => {
    const latent = v1Latent(16, 20, 2);
    const reply = await client.request({ op: 'upscale', family: 'sd15', size: [27, 31], latent: wireTensor(latent.shape, latent.data) });
    const direct = await server.engine.perform({ op: 'upscale', latent, target: { height: 27, width: 31 } }, DEFAULT_WORK_LIMITS);
    expect(reply.plan).toEqual(writePlan(direct.plan));
    expect(reply.latent.shape).toEqual([1, 4, 27, 31]);
    expect(f32Values(reply.latent.data)).toEqual(direct.latent.data);
  });

  for (const dtype of ['float16', 'bfloat16'] as const) {
    it(`answers a ${dtype} latent in ${dtype}`, async () => {
      const latent = v1Latent(8, 8, 3);
      const sent = decodeFloats(dtype, encodeFloats(dtype, latent.data));
      const reply = await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: { dtype, shape: [1, 4, 8, 8], data: encodeFloats(dtype, latent.data) } });
      expect(reply.latent.dtype).toBe(dtype);
      expect(reply.latent.data.byteLength).toBe(4 * 16 * 16 * 2);
      const direct = await server.engine.perform({ op: 'upscale', latent: makeLatent('v1', 'model', [1, 4, 8, 8], sent), target: { height: 16, width: 16 } }, DEFAULT_WORK_LIMITS);
      expect([...decodeFloats(dtype, reply.latent.data)]).toEqual([...decodeFloats(dtype, encodeFloats(dtype, direct.latent.data))]);
    });
  }

  it('interpose converts between families', async () => {
    const latent = makeLatent('xl', 'model', [2, 4, 12, 10], seededData(2 * 4 * 12 * 10, 4));
    const reply = await client.request({ op: 'interpose', from: 'xl', to: 'v1', latent: wireTensor(latent.shape, latent.data) });
    expect(reply.ok).toBe(true);
    expect(reply.latent.shape).toEqual([2, 4, 12, 10]);
    expect(f32Values(reply.latent.data)).toEqual((await server.engine.perform({ op: 'interpose', latent, to: 'v1' }, DEFAULT_WORK_LIMITS)).latent.data);
    expect(planSteps(reply.plan)).toEqual(['interposer-xl-to-v1 12x10 -> 12x10']);
    const to16 = await client.request({ op: 'interpose', from: 'v1', to: 'v3', latent: wireTensor(latent.shape, latent.data) });
    expect(to16.latent.shape).toEqual([2, 16, 12, 10]);
  });

  it('hires interposes and upscales in one round trip, with plan and warnings', async () => {
    const latent = makeLatent('xl', 'model', [1, 4, 16, 16], seededData(4 * 16 * 16, 5));
    const reply = await client.request({ op: 'hires', from: 'xl', to: 'v1', size: [32, 32], latent: wireTensor(latent.shape, latent.data) });
    const direct = await server.engine.perform({ op: 'hires', latent, to: 'v1', target: { height: 32, width: 32 } }, DEFAULT_WORK_LIMITS);
    expect(reply).toMatchObject({ ok: true, plan: writePlan(direct.plan) });
    expect(reply.plan).toMatchObject({ from: 'xl', to: 'v1', source: [16, 16], target: [32, 32], warnings: [] });
    expect(reply.plan.steps).toEqual([
      { kind: 'interpose', network: 'interposer-xl-to-v1', from: 'xl', to: 'v1', in: [16, 16], out: [16, 16] },
      { kind: 'upscale', network: 'upscaler-v1-x2.0', from: 'v1', to: 'v1', in: [16, 16], out: [32, 32] },
    ]);
    expect(f32Values(reply.latent.data)).toEqual(direct.latent.data);
    const same = await client.request({ op: 'hires', from: 'v1', to: 'v1', size: [24, 24], latent: wireTensor([1, 4, 16, 16], latent.data) });
    expect(planSteps(same.plan)).toEqual(['upscaler-v1-x1.5 16x16 -> 24x24']);
    const v1ToV3 = await client.request({ op: 'hires', from: 'v1', to: 'v3', size: [20, 20], latent: wireTensor([1, 4, 16, 16], latent.data) });
    expect(planSteps(v1ToV3.plan)).toEqual(['upscaler-v1-x1.25 16x16 -> 20x20', 'interposer-v1-to-v3 20x20 -> 20x20']);
    expect(v1ToV3.latent.shape).toEqual([1, 16, 20, 20]);
    // Neither SD3 end has an upscaler: a plain resize, and a warning that says so.
    const v3 = makeLatent('v3', 'model', [1, 16, 8, 8], seededData(16 * 64, 6));
    const plain = await client.request({ op: 'hires', from: 'v3', to: 'v3', size: [12, 12], latent: wireTensor(v3.shape, v3.data) });
    expect(plain.plan.steps).toEqual([{ kind: 'resize', network: null, from: 'v3', to: 'v3', in: [8, 8], out: [12, 12] }]);
    expect(plain.plan.warnings).toEqual([{ code: 'no_upscaler', message: 'no neural upscaler exists for v3 latents; resized bilinearly' }]);
  });
});

describe('preview', () => {
  it('answers the image the approximation draws, for one item or the grid', async () => {
    const latent = makeLatent('xl', 'model', [2, 4, 16, 24], seededData(2 * 4 * 16 * 24, 6, 2));
    const reply = await client.request({ op: 'preview', family: 'xl', index: 1, latent: wireTensor(latent.shape, latent.data) });
    const expected = renderPreview(latent, { index: 1 });
    expect(reply.image.width).toBe(24);
    expect(reply.image.height).toBe(16);
    expect(new Uint8Array(reply.image.data)).toEqual(expected.data);
    const grid = await client.request({ op: 'preview', family: 'xl', grid: true, latent: wireTensor(latent.shape, latent.data) });
    expect([grid.image.width, grid.image.height]).toEqual([48, 16]);
  });

  it('with noreply sends nothing back, but still reports errors', async () => {
    const latent = v1Latent(8, 8);
    client.sendRaw(packr.pack({ id: 'quiet', op: 'preview', family: 'v1', noreply: true, latent: wireTensor(latent.shape, latent.data) }));
    const broken = client.expectReply('quiet-broken');
    client.sendRaw(packr.pack({ id: 'quiet-broken', op: 'preview', family: 'v3', noreply: true, latent: wireTensor(latent.shape, latent.data) }));
    expectError(await broken, 'bad_tensor');
    // Replies come in order on one connection: once this one is here, a reply to 'quiet' would have come first.
    await client.request({ op: 'hello', protocol: PROTOCOL_VERSION });
    expect(client.events.filter((e) => e.id === 'quiet')).toEqual([]);
  });

  it('publish: false answers the image but shows it to no viewer', async () => {
    const watcher = await TestClient.connect(server.wsUrl);
    await watcher.request({ op: 'watch' });
    const hidden = v1Latent(8, 8, 21);
    const reply = await client.request({ op: 'preview', family: 'v1', job: 'hidden', publish: false, latent: wireTensor(hidden.shape, hidden.data) });
    expect(new Uint8Array(reply.image.data)).toEqual(renderPreview(hidden).data);
    const shown = v1Latent(8, 8, 22);
    await client.request({ op: 'preview', family: 'v1', job: 'shown', latent: wireTensor(shown.shape, shown.data) });
    // Events reach a watcher in order: once the later preview arrived, the hidden one never will.
    await watcher.waitForEvent((e) => e.event === 'preview' && e.job.job === 'shown');
    expect(watcher.events.filter((e) => e.event === 'preview' && e.job.job === 'hidden')).toEqual([]);
    const quiet = await client.request({ op: 'preview', family: 'v1', publish: false, noreply: true, latent: wireTensor(hidden.shape, hidden.data) });
    expectError(quiet, 'bad_request', /reach nobody/);
    watcher.close();
  });

  it('a newer step of the same job supersedes one not drawn yet', async () => {
    const raw = await RawWebSocket.connect(server.server.port);
    const frames = [1, 2, 3].map((step) => {
      const latent = v1Latent(8, 8, step);
      return packr.pack({ id: `step-${step}`, op: 'preview', family: 'v1', job: 'sup', step, total: 3, latent: wireTensor(latent.shape, latent.data) });
    });
    // One TCP write, so the server reads all three frames before it draws.
    raw.write(Buffer.concat(frames.map((f) => RawWebSocket.frame(f))));
    const [first, second, third] = await raw.waitForMessages(3);
    expect(first).toEqual({ id: 'step-1', ok: true, superseded: true });
    expect(second).toEqual({ id: 'step-2', ok: true, superseded: true });
    expect(third.id).toBe('step-3');
    expect(new Uint8Array(third.image.data)).toEqual(renderPreview(v1Latent(8, 8, 3)).data);
    raw.close();
  });
});

describe('errors keep the connection open', () => {
  it('bad msgpack, text frames, unknown ops and wrong fields get error replies', async () => {
    client.sendRaw(Uint8Array.from([0xc1, 0xc1, 0xff]));
    const garbage = await client.waitForEvent((e) => e.ok === false && e.id === null && /msgpack/.test(e.error.message));
    expectError(garbage, 'bad_request');
    client.sendRaw('{"id": 1, "op": "hello"}');
    expectError(await client.waitForEvent((e) => e.ok === false && /text/.test(e.error?.message)), 'bad_request');
    expectError(await client.request({ op: 'explode' }), 'bad_request', /"op"/);
    expectError(await client.request({ op: 'hello', protocol: 9 }), 'bad_request', /protocol/);
    expect((await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
  });

  it('unknown_family, bad_tensor, too_large', async () => {
    const latent = v1Latent(8, 8);
    expectError(await client.request({ op: 'upscale', family: 'sd9', scale: 2, latent: wireTensor(latent.shape, latent.data) }), 'unknown_family', /sd9/);
    expectError(await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: { ...wireTensor(latent.shape, latent.data), shape: [1, 4, 8, 9] } }), 'bad_tensor');
    expectError(await client.request({ op: 'upscale', family: 'v1', size: [200, 200], latent: wireTensor(latent.shape, latent.data) }), 'too_large');
    expectError(await client.request({ op: 'preview', family: 'v1', latent: { dtype: 'float32', shape: [64, 4, 1024, 1024], data: new Uint8Array(8) } }), 'too_large');
    const nan = latent.data.slice();
    nan[5] = NaN;
    expectError(await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, nan) }), 'bad_tensor', /non-finite/);
  });

  it('unsupported_direction and model_unavailable come from the engine', async () => {
    const latent = v1Latent(8, 8);
    expectError(await client.request({ op: 'interpose', from: 'v1', to: 'fx', latent: wireTensor(latent.shape, latent.data) }), 'unsupported_direction', /fx/);
    const fx = makeLatent('fx', 'model', [1, 16, 8, 8], seededData(16 * 64, 2));
    expectError(await client.request({ op: 'upscale', family: 'fx', scale: 2, latent: wireTensor(fx.shape, fx.data) }), 'unsupported_direction');
    const xl = makeLatent('xl', 'model', [1, 4, 8, 8], latent.data);
    expectError(await client.request({ op: 'upscale', family: 'xl', scale: 2, latent: wireTensor(xl.shape, xl.data) }), 'model_unavailable', /latent-upscaler-v2.1_SDxl-x2.0/);
  });

  it('busy when a client has more inference requests in flight than allowed', async () => {
    const latent = v1Latent(32, 32);
    const replies = await Promise.all(
      Array.from({ length: 8 }, () => client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) })),
    );
    const busy = replies.filter((r) => !r.ok);
    expect(busy.length).toBeGreaterThanOrEqual(4);
    for (const reply of busy) expectError(reply, 'busy', /limit 4/);
    expect(replies.filter((r) => r.ok).length).toBeGreaterThanOrEqual(1);
  });

  it('a frame over maxPayload closes only that connection (1009)', async () => {
    const big = await TestClient.connect(server.wsUrl);
    big.sendRaw(new Uint8Array(1024 * 1024 + 1));
    expect((await big.closed).code).toBe(1009);
    expect((await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
  });

  it('WebSocket on / works too; other paths are refused', async () => {
    const root = await TestClient.connect(server.wsUrl.replace(/\/ws$/, '/'));
    expect((await root.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    root.close();
    const refused = new WebSocket(server.wsUrl.replace(/\/ws$/, '/other'));
    const status = await new Promise<number>((resolve) => refused.once('unexpected-response', (_q, response) => resolve(response.statusCode ?? 0)));
    expect(status).toBe(404);
  });
});
