import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { seededData } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { TestClient, wireTensor } from './support/server-harness.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';

/**
 * Requests that once killed the process (a Cascade latent the interposer halves to nothing sent
 * the planner into an endless loop, then Node aborted), against a real server process.
 */
describe('a real sidecar process, sent requests that plan to nothing', () => {
  let serve: ServeProcess;
  let client: TestClient;

  beforeAll(async () => {
    serve = await spawnServe(['--port', '0', '--device', 'cpu', '--offline', '--models', makeModelsDir()], isolatedEnv());
    client = await TestClient.connect(`ws://127.0.0.1:${serve.port}/ws`);
  });

  afterAll(() => {
    client.close();
    serve.child.kill('SIGKILL');
  });

  const cases: [string, Record<string, unknown>][] = [
    ['ca [1,4,1,1] to v1 at 1x1', { op: 'hires', from: 'ca', to: 'v1', size: [1, 1], latent: wireTensor([1, 4, 1, 1], seededData(4, 1)) }],
    ['ca [1,4,1,64] to xl at 64x64', { op: 'hires', from: 'ca', to: 'xl', size: [64, 64], latent: wireTensor([1, 4, 1, 64], seededData(256, 2)) }],
    ['ca [1,4,64,1] into v3', { op: 'interpose', from: 'ca', to: 'v3', latent: wireTensor([1, 4, 64, 1], seededData(256, 3)) }],
  ];
  for (const [name, request] of cases) {
    it(`answers ${name} with bad_request at once and stays up`, async () => {
      const reply = await client.request(request);
      expect(reply).toMatchObject({ ok: false, error: { code: 'bad_request', message: expect.stringMatching(/is too small: interposer-ca-to-\w+ scales it by 0\.5 to \d+x\d+/) } });
      expect(await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true });
      expect(serve.child.exitCode).toBeNull();
    });
  }

  it('still does real work afterwards', async () => {
    const reply = await client.request({ op: 'hires', from: 'ca', to: 'v1', size: [16, 16], latent: wireTensor([1, 4, 2, 2], seededData(16, 4)) });
    expect(reply).toMatchObject({ ok: true, latent: { shape: [1, 4, 16, 16] } });
  });
});
