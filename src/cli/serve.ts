import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine } from '../engine.ts';
import { BridgeError } from '../errors.ts';
import { DEVICE_CHOICES, isDeviceChoice, Runtime } from '../runtime.ts';
import { DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_PORT, type ServerLimits } from '../server/options.ts';
import { startServer } from '../server/server.ts';
import { storeOptionsFromEnv, envFlag } from '../store/store-options.ts';
import { ModelStore } from '../store/store.ts';
import type { Command } from './main.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

/** Numeric limits settable by flag (`--max-queue 8`) or environment (`LATENT_BRIDGE_MAX_QUEUE=8`). */
const LIMIT_FLAGS = {
  'max-payload-mb': { limit: 'maxPayload', unit: MIB, help: 'largest WebSocket message, MiB' },
  'max-frame-items': { limit: 'maxFrameItems', unit: 1, help: 'values (keys, values, array items) in one message' },
  'max-frame-depth': { limit: 'maxFrameDepth', unit: 1, help: 'maps and arrays nested in one message' },
  'max-frame-strings-kb': { limit: 'maxFrameStringBytes', unit: KIB, help: 'bytes of all strings in one message, KiB' },
  'max-elements': { limit: 'maxElements', unit: 1, help: 'largest tensor, in elements, received or produced' },
  'max-side': { limit: 'maxSide', unit: 1, help: 'largest requested height or width, latent pixels' },
  'max-requests-per-client': { limit: 'maxRequestsPerClient', unit: 1, help: 'requests of any kind one connection may have in flight' },
  'max-jobs-per-client': { limit: 'maxJobsPerClient', unit: 1, help: 'inference requests one connection may have in flight' },
  'max-queue': { limit: 'maxQueue', unit: 1, help: 'inference requests waiting across all connections' },
  'max-connections': { limit: 'maxConnections', unit: 1, help: 'open WebSocket connections' },
  'max-http-connections': { limit: 'maxHttpConnections', unit: 1, help: 'open plain HTTP connections; a new one closes the longest idle' },
  'max-preview-mb': { limit: 'maxPreviewBytes', unit: MIB, help: 'preview images kept for viewers, MiB' },
  'heartbeat-ms': { limit: 'heartbeatMs', unit: 1, help: 'ping a peer silent this long; drop it if silent as long again' },
  concurrency: { limit: 'concurrency', unit: 1, help: 'inference requests run at once' },
} as const satisfies Record<string, { limit: keyof ServerLimits; unit: number; help: string }>;

type LimitFlag = keyof typeof LIMIT_FLAGS;

function envName(flag: string): string {
  return `LATENT_BRIDGE_${flag.toUpperCase().replace(/-/g, '_')}`;
}

const usage = `usage: latent-bridge serve [options]

Runs the sidecar: the msgpack WebSocket protocol (docs/protocol.md) at /ws, the live preview
viewer at /, /healthz and /metrics, all on one port. Every option can also be set through the
environment variable named after it.

  --host HOST         address to listen on (default ${DEFAULT_HOST}; LATENT_BRIDGE_HOST).
                      Anything but loopback requires --token
  --port N            port (default ${DEFAULT_PORT}, 0 = any free port; LATENT_BRIDGE_PORT)
  --token SECRET      clients must send "Authorization: Bearer SECRET" or ?token=SECRET
                      (LATENT_BRIDGE_TOKEN)
  --device D          ${DEVICE_CHOICES.join('|')} (default auto: CUDA when installed, else CPU; LATENT_BRIDGE_DEVICE)
  --threads N         CPU threads per network run (default 2; LATENT_BRIDGE_THREADS)
  --models DIR        also look for weight files in DIR (repeatable; LATENT_BRIDGE_MODELS too)
  --offline           never download (HF_HUB_OFFLINE=1 does the same)
  --allow-nonfinite   pass latents holding NaN or infinity to the networks instead of refusing them
${Object.entries(LIMIT_FLAGS)
  .map(([flag, { limit, unit, help }]) => `  --${flag.padEnd(24)}${help} (default ${DEFAULT_LIMITS[limit as keyof ServerLimits] as number / unit})`)
  .join('\n')}

The first line printed is "listening on http://HOST:PORT" (with the real port when --port 0).
SIGINT or SIGTERM stops it: queued requests are answered busy, running ones finish.`;

function readPackageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

function parseCount(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value < min) throw new BridgeError('bad_request', `--${flag} must be an integer >= ${min}, got "${text}"`);
  return value;
}

function setting(values: Record<string, unknown>, flag: string): string | undefined {
  const value = values[flag];
  if (typeof value === 'string') return value;
  const fromEnv = process.env[envName(flag)];
  return fromEnv !== undefined && fromEnv.trim() !== '' ? fromEnv.trim() : undefined;
}

function readLimits(values: Record<string, unknown>): ServerLimits {
  const limits: Record<string, number | boolean> = { ...DEFAULT_LIMITS };
  for (const [flag, { limit, unit }] of Object.entries(LIMIT_FLAGS)) {
    const text = setting(values, flag);
    if (text !== undefined) limits[limit] = parseCount(flag, text, 1) * unit;
  }
  limits.checkFinite = !(values['allow-nonfinite'] === true || envFlag(process.env.LATENT_BRIDGE_ALLOW_NONFINITE));
  return limits as unknown as ServerLimits;
}

/** Resolves on the first SIGINT or SIGTERM. */
function shutdownSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string): void => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export const command: Command = {
  summary: 'run the sidecar server (WebSocket protocol, live preview viewer, health and metrics)',
  usage,
  async run(args) {
    const { values } = parseArgs({
      args,
      options: {
        host: { type: 'string' },
        port: { type: 'string' },
        token: { type: 'string' },
        device: { type: 'string' },
        threads: { type: 'string' },
        models: { type: 'string', multiple: true },
        offline: { type: 'boolean' },
        'allow-nonfinite': { type: 'boolean' },
        ...(Object.fromEntries(Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: 'string' }])) as Record<LimitFlag, { type: 'string' }>),
      },
      strict: true,
    });
    const host = setting(values, 'host') ?? DEFAULT_HOST;
    const portText = setting(values, 'port');
    const port = portText === undefined ? DEFAULT_PORT : parseCount('port', portText, 0);
    if (port > 65535) throw new BridgeError('bad_request', `--port must be at most 65535, got ${port}`);
    const token = setting(values, 'token');
    const device = setting(values, 'device') ?? 'auto';
    if (!isDeviceChoice(device)) throw new BridgeError('bad_request', `--device must be one of ${DEVICE_CHOICES.join(', ')}, got "${device}"`);
    const threadsText = setting(values, 'threads');
    const limits = readLimits(values);

    const store = new ModelStore(storeOptionsFromEnv({ modelDirs: values.models, offline: values.offline }));
    const runtime = await Runtime.create({ device, ...(threadsText !== undefined ? { threads: parseCount('threads', threadsText, 1) } : {}) });
    const engine = new Engine({ source: store, runtime });
    const server = await startServer({
      host,
      port,
      token,
      limits,
      engine,
      identity: { version: readPackageVersion(), device: runtime.device, deviceNote: runtime.note },
      listModels: () => store.list(),
    });
    console.log(`listening on ${server.url}`);
    console.log(`device: ${runtime.device}${runtime.note ? ` (${runtime.note})` : ''}`);
    console.log(`viewer: ${server.url}/${token ? '?token=<your token>' : ''}`);
    const signal = await shutdownSignal();
    console.log(`${signal}: shutting down`);
    await server.close();
    return 0;
  },
};
