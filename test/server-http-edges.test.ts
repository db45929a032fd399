import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { printable } from '../src/server/log-text.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { TestClient } from './support/server-harness.ts';
import { fetchMetrics, metric } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

const CAP = 4;

let serve: ServeProcess;
let base: string;
beforeAll(async () => {
  serve = await spawnServe(['--port', '0', '--offline', '--device', 'cpu', '--models', makeModelsDir([]), '--max-http-connections', String(CAP)], isolatedEnv());
  base = `http://127.0.0.1:${serve.port}`;
});
afterAll(() => {
  serve.child.kill('SIGKILL');
});

/** A TCP connection that never sends a byte: Node's HTTP timeouts do not apply to it. */
async function idleSocket(): Promise<{ socket: net.Socket; closed: Promise<void> }> {
  const socket = net.connect(serve.port, '127.0.0.1');
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  await new Promise((resolve) => socket.once('connect', resolve));
  return { socket, closed };
}

describe('plain HTTP connections', () => {
  it('are capped: each new one closes the one idle longest, so idle sockets lock nobody out', async () => {
    const closedBefore = metric(await fetchMetrics(base), 'latent_bridge_closed_idle_http_total');
    const idle = [];
    for (let i = 0; i < 2 * CAP; i++) idle.push(await idleSocket());
    // The first CAP made way for the next CAP.
    await Promise.all(idle.slice(0, CAP).map(({ closed }) => closed));
    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(metric(await fetchMetrics(base), 'latent_bridge_closed_idle_http_total') - closedBefore).toBeGreaterThanOrEqual(CAP + 1);
    for (const { socket } of idle) socket.destroy();
  });

  it('do not count WebSockets: a full set of idle ones never closes an open WebSocket', async () => {
    const client = await TestClient.connect(`${base.replace('http', 'ws')}/ws`);
    const idle = [];
    for (let i = 0; i < 2 * CAP; i++) idle.push(await idleSocket());
    await Promise.all(idle.slice(0, CAP).map(({ closed }) => closed));
    expect(await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true });
    client.close();
    for (const { socket } of idle) socket.destroy();
  });
});

describe('the WebSocket handshake', () => {
  it('selects no subprotocol, even one the client offers (the protocol uses none)', async () => {
    const raw = await RawWebSocket.connect(serve.port, '/ws', 'Sec-WebSocket-Protocol: chat, latent-bridge\r\n');
    expect(raw.handshake).toMatch(/^HTTP\/1\.1 101/);
    expect(raw.handshake.toLowerCase()).not.toContain('sec-websocket-protocol');
    raw.close();
  });
});

describe('client-supplied names in logs', () => {
  it('print on one line, quoted, with every control and direction character escaped', () => {
    expect(printable('webui')).toBe('"webui"');
    expect(printable('a\nb\r\u001b[31m\u0000\u007f\u009b\u2028\u2029\u202e\u2066"\\')).toBe('"a\\u000ab\\u000d\\u001b[31m\\u0000\\u007f\\u009b\\u2028\\u2029\\u202e\\u2066\\"\\\\"');
    expect(printable('é 😀 日本')).toBe('"é 😀 日本"');
  });
});
