import { afterEach, describe, expect, it } from 'vitest';
import { makeLatent } from '../src/latent.ts';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { seededData } from './support/conformance.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { TestClient, tryUpgrade, wireTensor } from './support/server-harness.ts';
import { isolatedEnv, runServeToExit, spawnServe, type ServeProcess } from './support/server-process.ts';

const started: ServeProcess[] = [];
afterEach(() => {
  for (const serve of started.splice(0)) serve.child.kill('SIGKILL');
});

/** A sidecar at the given level, a client that connects, asks for work and leaves, and one refused. */
async function session(flags: string[]): Promise<string> {
  const serve = await spawnServe(['--port', '0', '--device', 'cpu', '--offline', '--models', makeModelsDir(['upscaler-v1-x2.0']), ...flags], isolatedEnv());
  started.push(serve);
  const url = `ws://127.0.0.1:${serve.port}/ws`;
  const client = await TestClient.connect(url);
  await client.request({ op: 'hello', protocol: PROTOCOL_VERSION, client: 'console test' });
  const latent = makeLatent('v1', 'model', [1, 4, 8, 8], seededData(256, 1));
  expect((await client.request({ op: 'upscale', family: 'v1', scale: 2, latent: wireTensor(latent.shape, latent.data) })).ok).toBe(true);
  expect((await client.request({ op: 'upscale', family: 'v3', scale: 2, latent: wireTensor(latent.shape, latent.data) })).ok).toBe(false);
  client.close();
  await client.closed;
  expect(await tryUpgrade(url, { origin: 'http://evil.example' })).toMatchObject({ opened: false, status: 403 });
  // The lines come from another process: give it a moment to write the last ones.
  await new Promise((resolve) => setTimeout(resolve, 300));
  return serve.output();
}

describe('the sidecar console', () => {
  it('says what it does: networks loaded (size, time), clients connected, left and refused, and why', async () => {
    const output = await session([]);
    expect(output).toMatch(/^connection #1 connected from 127\.0\.0\.1 \(1 open\)$/m);
    expect(output).toMatch(/loaded upscaler-v1-x2\.0 \(2\.3 MiB, \S+latent-upscaler-v2\.1_SDv1-x2\.0\.safetensors\) on cpu in \d+ ms/);
    expect(output).toMatch(/^connection #1 \(client "console test"\) left \(close code 1005; 0 open\)$/m);
    expect(output).toMatch(/^refused a connection from 127\.0\.0\.1 \(403\): "cross-origin WebSocket from http:\/\/evil\.example refused/m);
    expect(output).not.toMatch(/answered in/);
  });

  it('with --verbose also says every request and its outcome', async () => {
    const output = await session(['--verbose']);
    expect(output).toMatch(/: hello answered in [\d.]+ ms/);
    expect(output).toMatch(/: upscale answered in [\d.]+ ms/);
    expect(output).toMatch(/: upscale refused, bad_tensor: /);
  });

  it('with --quiet says only that it listens, and nothing of what goes well', async () => {
    const output = await session(['--quiet']);
    expect(output).not.toMatch(/connected|loaded|left|refused|answered/);
    expect(output).toMatch(/^listening on http:\/\/127\.0\.0\.1:\d+\n/);
  });

  it('refuses --quiet and --verbose together', async () => {
    const { code, output } = await runServeToExit(['--quiet', '--verbose', '--device', 'cpu'], isolatedEnv());
    expect(code).toBe(1);
    expect(output).toMatch(/--quiet and --verbose contradict each other/);
  });
});
