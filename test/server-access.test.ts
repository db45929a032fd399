import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { isLoopbackHost } from '../src/server/access.ts';
import { startTestServer, TestClient, tryUpgrade, type TestServer } from './support/server-harness.ts';

describe('loopback host names', () => {
  it('knows what only this machine reaches', () => {
    for (const host of ['127.0.0.1', '127.1.2.3', 'localhost', 'LOCALHOST', 'app.localhost', '::1', '[::1]', '::ffff:127.0.0.1']) expect(isLoopbackHost(host)).toBe(true);
    for (const host of ['0.0.0.0', '::', '192.168.1.2', 'example.com', 'localhost.example.com', '10.0.0.1']) expect(isLoopbackHost(host)).toBe(false);
  });
});

describe('without a token (loopback only)', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ models: [] });
  });
  afterAll(() => server.close());

  it('accepts clients that send no Origin (Python, Node)', async () => {
    expect(await tryUpgrade(server.wsUrl)).toEqual({ opened: true });
  });

  it("accepts the viewer page's own origin", async () => {
    const origin = `http://127.0.0.1:${server.server.port}`;
    expect(await tryUpgrade(server.wsUrl, { origin })).toEqual({ opened: true });
    expect(await tryUpgrade(`ws://localhost:${server.server.port}/ws`, { origin: `http://localhost:${server.server.port}` })).toEqual({ opened: true });
  });

  it('accepts its own origin served over https (behind a TLS proxy that keeps the Host)', async () => {
    expect(await tryUpgrade(server.wsUrl, { origin: `https://127.0.0.1:${server.server.port}` })).toEqual({ opened: true });
    expect(await tryUpgrade(server.wsUrl, { origin: `https://localhost:${server.server.port}` })).toEqual({ opened: false, status: 403 });
  });

  it('refuses a cross-origin upgrade (a web page on another site)', async () => {
    expect(await tryUpgrade(server.wsUrl, { origin: 'https://evil.example' })).toEqual({ opened: false, status: 403 });
    expect(await tryUpgrade(server.wsUrl, { origin: `http://127.0.0.1:${server.server.port + 1}` })).toEqual({ opened: false, status: 403 });
    expect(await tryUpgrade(server.wsUrl, { origin: 'null' })).toEqual({ opened: false, status: 403 });
  });

  it('refuses a Host that is not loopback (DNS rebinding), for WebSocket and HTTP', async () => {
    const host = `rebind.example:${server.server.port}`;
    expect(await tryUpgrade(server.wsUrl, { headers: { Host: host }, origin: `http://${host}` })).toEqual({ opened: false, status: 403 });
    const response = await new Promise<number>((resolve) => {
      import('node:http').then(({ get }) =>
        get({ host: '127.0.0.1', port: server.server.port, path: '/healthz', headers: { Host: host } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }),
      );
    });
    expect(response).toBe(403);
  });

  it('answers request targets that are not a plain path (//, absolute-form, *) instead of crashing', async () => {
    const port = server.server.port;
    const statusOf = (head: string): Promise<string> =>
      new Promise((resolve) => {
        const socket = net.connect(port, '127.0.0.1');
        let answer = '';
        socket.on('data', (chunk) => (answer += chunk.toString()));
        socket.on('close', () => resolve(answer.split('\r\n')[0]));
        socket.on('error', () => {});
        socket.end(`${head}Host: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
      });
    const upgrade = 'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';
    expect(await statusOf('GET // HTTP/1.1\r\n')).toBe('HTTP/1.1 404 Not Found');
    expect(await statusOf('GET //[ HTTP/1.1\r\n')).toBe('HTTP/1.1 404 Not Found');
    expect(await statusOf(`GET http://127.0.0.1:${port}/healthz HTTP/1.1\r\n`)).toBe('HTTP/1.1 200 OK');
    expect(await statusOf('OPTIONS * HTTP/1.1\r\n')).toBe('HTTP/1.1 405 Method Not Allowed');
    expect(await statusOf(`GET // HTTP/1.1\r\n${upgrade}`)).toBe('HTTP/1.1 404 Not Found');
    expect(await statusOf(`GET //x:y@[ HTTP/1.1\r\n${upgrade}`)).toBe('HTTP/1.1 404 Not Found');
    expect((await fetch(`${server.server.url}/healthz`)).status).toBe(200);
  });

  it('counts refused upgrades in /metrics', async () => {
    const refused = async () => Number(/^latent_bridge_rejected_upgrades_total (\d+)$/m.exec(await (await fetch(`${server.server.url}/metrics`)).text())?.[1]);
    const before = await refused();
    expect(await tryUpgrade(server.wsUrl, { origin: 'http://evil.example' })).toMatchObject({ opened: false, status: 403 });
    expect(await tryUpgrade(`ws://127.0.0.1:${server.server.port}/nowhere`)).toMatchObject({ opened: false, status: 404 });
    expect(await refused()).toBe(before + 2);
  });
});

describe('on IPv6 loopback', () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ host: '::1', models: [] });
  });
  afterAll(() => server.close());

  it('serves [::1] with its own origin, and refuses other origins and hosts', async () => {
    const port = server.server.port;
    expect(server.server.url).toBe(`http://[::1]:${port}`);
    const wsUrl = `ws://[::1]:${port}/ws`;
    expect(await tryUpgrade(wsUrl)).toEqual({ opened: true });
    expect(await tryUpgrade(wsUrl, { origin: `http://[::1]:${port}` })).toEqual({ opened: true });
    expect(await tryUpgrade(wsUrl, { origin: `http://127.0.0.1:${port}` })).toEqual({ opened: false, status: 403 });
    expect(await tryUpgrade(wsUrl, { headers: { Host: `[::2]:${port}` } })).toEqual({ opened: false, status: 403 });
    expect((await fetch(`${server.server.url}/healthz`)).status).toBe(200);
  });
});

describe('with a token', () => {
  let server: TestServer;
  const token = 's3cret-token';
  beforeAll(async () => {
    // Listening on every interface is only allowed because a token is set.
    server = await startTestServer({ host: '0.0.0.0', token, models: [] });
  });
  afterAll(() => server.close());

  it('refuses upgrades without the token or with a wrong one', async () => {
    expect(await tryUpgrade(server.wsUrl)).toEqual({ opened: false, status: 401 });
    expect(await tryUpgrade(server.wsUrl, { headers: { Authorization: 'Bearer wrong' } })).toEqual({ opened: false, status: 401 });
    expect(await tryUpgrade(`${server.wsUrl}?token=wrong`)).toEqual({ opened: false, status: 401 });
  });

  it('accepts the token as a Bearer header or as ?token=', async () => {
    const client = await TestClient.connect(server.wsUrl, { headers: { Authorization: `Bearer ${token}` } });
    expect((await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).ok).toBe(true);
    client.close();
    expect(await tryUpgrade(`${server.wsUrl}?token=${token}`)).toEqual({ opened: true });
  });

  it('still refuses a cross-origin page even with the token', async () => {
    expect(await tryUpgrade(`${server.wsUrl}?token=${token}`, { origin: 'https://evil.example' })).toEqual({ opened: false, status: 403 });
  });

  it('guards the viewer page, /healthz and /metrics, but not the static assets', async () => {
    const base = `http://127.0.0.1:${server.server.port}`;
    for (const path of ['/', '/healthz', '/metrics']) {
      expect((await fetch(`${base}${path}`)).status).toBe(401);
      expect((await fetch(`${base}${path}?token=${token}`)).status).toBe(200);
      expect((await fetch(`${base}${path}`, { headers: { Authorization: `Bearer ${token}` } })).status).toBe(200);
    }
    expect((await fetch(`${base}/viewer.js`)).status).toBe(200);
  });
});

describe('refusing to start', () => {
  it('will not listen off loopback without a token', async () => {
    await expect(startTestServer({ host: '0.0.0.0', models: [] })).rejects.toMatchObject({ code: 'unauthorized', message: expect.stringMatching(/--token/) });
  });
});
