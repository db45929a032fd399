import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeModelsDir } from './support/models-dir.ts';
import { fetchMetrics, metric, rssBytes } from './support/server-observe.ts';
import { isolatedEnv, spawnServe, type ServeProcess } from './support/server-process.ts';
import { SOAK_MODELS, SoakCases, soakRound } from './support/soak.ts';

const MIB = 1024 * 1024;
const CLIENTS = 16;
const REQUESTS = 200;
const SILENT_PEERS = 8;

let serve: ServeProcess;
let cases: SoakCases;
beforeAll(async () => {
  const models = makeModelsDir(SOAK_MODELS);
  cases = await SoakCases.create(models);
  serve = await spawnServe(['--port', '0', '--offline', '--device', 'cpu', '--models', models, '--heartbeat-ms', '1000'], isolatedEnv());
});
afterAll(() => {
  serve.child.kill('SIGKILL');
});

describe('soak', () => {
  it(`${CLIENTS} clients x ${REQUESTS} mixed requests next to 50 idle sockets and ${SILENT_PEERS} silent peers, twice: every answer right, no growth the second time`, async () => {
    const pid = serve.child.pid as number;
    const rounds = [];
    for (let round = 0; round < 2; round++) {
      const result = await soakRound({ port: serve.port, cases, clients: CLIENTS, requests: REQUESTS, silentPeers: SILENT_PEERS });
      expect(result.wrong).toEqual([]);
      expect(result.answered).toBe(CLIENTS * REQUESTS);
      rounds.push(rssBytes(pid));
    }
    const metrics = await fetchMetrics(`http://127.0.0.1:${serve.port}`);
    expect(metric(metrics, 'latent_bridge_dropped_peers_total')).toBe(2 * SILENT_PEERS);
    expect(metric(metrics, 'latent_bridge_connections')).toBe(0);
    expect(metric(metrics, 'latent_bridge_queue_depth')).toBe(0);
    // The first round warms caches and code; the second one must leave nothing behind.
    expect(rounds[1] - rounds[0]).toBeLessThan(24 * MIB);
  }, 180_000);
});
