import { afterAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeLatent } from '../src/latent.ts';
import { seededData } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { isolatedEnv, runServeToExit, spawnServe, type ServeProcess } from './support/server-process.ts';
import { TestClient, tryUpgrade, wireTensor } from './support/server-harness.ts';

const started: ServeProcess[] = [];
afterAll(() => {
  for (const serve of started) serve.child.kill('SIGKILL');
});

describe('latent-bridge serve', () => {
  it('prints the bound port first, serves the protocol, and stops cleanly on SIGTERM', async () => {
    const models = makeModelsDir(['upscaler-v1-x2.0']);
    const serve = await spawnServe(['--port', '0', '--models', models, '--offline', '--device', 'cpu'], isolatedEnv());
    started.push(serve);
    expect(serve.firstLine).toBe(`listening on http://127.0.0.1:${serve.port}`);
    const client = await TestClient.connect(`ws://127.0.0.1:${serve.port}/ws`);
    expect(await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true, device: 'cpu', version: expect.stringMatching(/^\d+\.\d+\.\d+/) });
    const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 1));
    expect(await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) })).toMatchObject({ ok: true, plan: { steps: [{ kind: 'upscale', network: 'upscaler-v1-x2.0', in: [8, 8], out: [16, 16] }] } });
    serve.child.kill('SIGTERM');
    expect(await serve.exited).toBe(0);
    expect((await client.closed).code).toBe(1001);
    expect(serve.output()).toMatch(/device: cpu/);
    expect(serve.output()).toMatch(/SIGTERM: shutting down/);
  });

  it('takes its settings from the environment: LATENT_BRIDGE_PORT, LATENT_BRIDGE_TOKEN', async () => {
    const serve = await spawnServe(['--offline', '--device', 'cpu'], isolatedEnv({ LATENT_BRIDGE_PORT: '0', LATENT_BRIDGE_TOKEN: 'from-env' }));
    started.push(serve);
    expect(await tryUpgrade(`ws://127.0.0.1:${serve.port}/ws`)).toEqual({ opened: false, status: 401 });
    expect(await tryUpgrade(`ws://127.0.0.1:${serve.port}/ws`, { headers: { Authorization: 'Bearer from-env' } })).toEqual({ opened: true });
    serve.child.kill('SIGINT');
    expect(await serve.exited).toBe(0);
  });

  it('refuses a non-loopback host without a token', async () => {
    const { code, output } = await runServeToExit(['--host', '0.0.0.0', '--port', '0', '--device', 'cpu'], isolatedEnv());
    expect(code).toBe(1);
    expect(output).toMatch(/refusing to listen on 0\.0\.0\.0 without a token/);
  });

  it('rejects bad flag values with a message', async () => {
    const { code, output } = await runServeToExit(['--max-queue', 'lots', '--device', 'cpu'], isolatedEnv());
    expect(code).toBe(1);
    expect(output).toMatch(/--max-queue must be an integer/);
  });
});
