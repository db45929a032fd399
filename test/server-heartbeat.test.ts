import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROTOCOL_VERSION } from '../src/protocol/messages.ts';
import { makeModelsDir } from './support/models-dir.ts';
import { packr, TestClient, tryUpgrade } from './support/server-harness.ts';
import { fetchMetrics, metric, until } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { RawWebSocket } from './support/server-raw-socket.ts';

const SLOTS = 4;
/** A client name that would forge a log line and recolour the terminal if it were printed as is. */
const EVIL_NAME = 'webui\n[latent-bridge] all good \u001b[2J\u009b31m\u2028';

let serve: ServeProcess;
let url: string;
beforeAll(async () => {
  serve = await spawnServe(
    ['--port', '0', '--offline', '--device', 'cpu', '--models', makeModelsDir([]), '--heartbeat-ms', '300', '--max-connections', String(SLOTS)],
    isolatedEnv(),
  );
  url = `ws://127.0.0.1:${serve.port}/ws`;
});
afterAll(() => {
  serve.child.kill('SIGKILL');
});

const base = () => `http://127.0.0.1:${serve.port}`;

/** A WebSocket peer that finished its handshake and then went away without a word: it never sends, never answers a ping. */
const silentPeer = () => RawWebSocket.connect(serve.port);

describe('peers that vanish without closing', () => {
  it('are dropped, which frees their slots, and are counted in /metrics and named safely in the log', async () => {
    await until(async () => metric(await fetchMetrics(base()), 'latent_bridge_connections') === 0);
    const droppedBefore = metric(await fetchMetrics(base()), 'latent_bridge_dropped_peers_total');
    const silent = await Promise.all(Array.from({ length: SLOTS }, silentPeer));
    silent[0].write(RawWebSocket.frame(packr.pack({ id: 1, op: 'hello', protocol: PROTOCOL_VERSION, client: EVIL_NAME })));
    expect(await silent[0].waitForMessages(1)).toMatchObject([{ id: 1, ok: true }]);
    // Every slot is held by a peer that is gone.
    expect(await tryUpgrade(url)).toEqual({ opened: false, status: 503 });

    await Promise.all(silent.map((peer) => peer.closed));
    const client = await TestClient.connect(url);
    expect(await client.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true });
    client.close();
    expect(metric(await fetchMetrics(base()), 'latent_bridge_dropped_peers_total') - droppedBefore).toBe(SLOTS);

    const log = serve.output();
    expect(log).toContain('(client "webui\\u000a[latent-bridge] all good \\u001b[2J\\u009b31m\\u2028"): no sign of life');
    expect(log).not.toMatch(/^\[latent-bridge\] all good/m);
    expect(log).not.toMatch(/[\u001b\u009b\u2028]/);
  });

  it('keeps a peer that sends nothing but answers pings, as every WebSocket library does', async () => {
    const idle = await TestClient.connect(url);
    const silent = await silentPeer();
    // Once the silent peer opened at the same time is gone, the idle one has been pinged and kept.
    await silent.closed;
    expect(idle.ws.readyState).toBe(idle.ws.OPEN);
    expect(await idle.request({ op: 'hello', protocol: PROTOCOL_VERSION })).toMatchObject({ ok: true });
    idle.close();
  });

  it('turns on TCP keepalive for accepted connections', async () => {
    const peer = await silentPeer();
    const hex = (port: number | undefined) => `:${(port ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    // The server's side of this connection: its local port is the server's, its remote port the peer's.
    const row = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .map((line) => line.trim().split(/\s+/))
      .find((fields) => fields[1]?.endsWith(hex(serve.port)) && fields[2]?.endsWith(hex(peer.socket.localPort)));
    expect(row, 'the connection in /proc/net/tcp').toBeDefined();
    // Field 5 is "timer:expires"; timer 2 is the keepalive timer.
    expect(row?.[5].split(':')[0]).toBe('02');
    peer.close();
  });
});
