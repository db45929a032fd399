import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Engine } from '../engine.ts';
import { BridgeError } from '../errors.ts';
import { DEVICE_CHOICES, Runtime } from '../runtime.ts';
import { DEFAULT_HOST, DEFAULT_LIMITS, DEFAULT_PORT, type ServerLimits } from '../server/options.ts';
import { startServer, type RunningServer } from '../server/server.ts';
import { consoleLog, type LogLevel } from '../console-log.ts';
import { envFlag } from '../store/store-options.ts';
import { createModelStore, envName, integerOption, readDevice, readWorkLimits, setting, WORK_LIMIT_OPTIONS, WORK_LIMIT_USAGE } from './engine-setup.ts';
import type { Command } from './command.ts';
import { parentExited } from './parent-watch.ts';
import { onStopSignal } from './stop-signal.ts';

const KIB = 1024;
const MIB = 1024 * KIB;

/** Numeric limits settable by flag (`--max-queue 8`) or environment (`LATENT_BRIDGE_MAX_QUEUE=8`). */
const LIMIT_FLAGS = {
  'max-payload-mb': { limit: 'maxPayload', unit: MIB, help: 'largest WebSocket message, MiB' },
  'max-frame-items': { limit: 'maxFrameItems', unit: 1, help: 'values (keys, values, array items) in one message' },
  'max-frame-depth': { limit: 'maxFrameDepth', unit: 1, help: 'maps and arrays nested in one message' },
  'max-frame-strings-kb': { limit: 'maxFrameStringBytes', unit: KIB, help: 'bytes of all strings in one message, KiB' },
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

const usage = `usage: latent-bridge serve [options]

Runs the sidecar: the msgpack WebSocket protocol (docs/protocol.md) at /ws, the live preview
viewer at /, /healthz and /metrics, all on one port. Every option can also be set through the
environment variable named after it.

  --host HOST         address to listen on (default ${DEFAULT_HOST}; LATENT_BRIDGE_HOST).
                      Anything but loopback requires --token
  --port N            port (default ${DEFAULT_PORT}, 0 = any free port; LATENT_BRIDGE_PORT)
  --token SECRET      clients must send "Authorization: Bearer SECRET" or ?token=SECRET
                      (LATENT_BRIDGE_TOKEN)
  --device D          ${DEVICE_CHOICES.join('|')} (default auto: the first GPU provider that works here, else CPU; LATENT_BRIDGE_DEVICE)
  --threads N         CPU threads per network run (default 2; LATENT_BRIDGE_THREADS)
  --models DIR        also look for weight files in DIR (repeatable; LATENT_BRIDGE_MODELS too)
  --comfyui DIR       also use the weight files of the ComfyUI install in DIR (LATENT_BRIDGE_COMFYUI too)
  --offline           never download (HF_HUB_OFFLINE=1 does the same)
  --exit-with-parent  stop when the process that started it exits (npm start and the webui
                      extension use it, so no orphan keeps the port)
  --quiet             say only what goes wrong (LATENT_BRIDGE_QUIET=1)
  --verbose           also say every request and its outcome (LATENT_BRIDGE_VERBOSE=1); by
                      default it says when networks load or download and clients come and go
${WORK_LIMIT_USAGE}
${Object.entries(LIMIT_FLAGS)
  .map(([flag, { limit, unit, help }]) => `  --${flag.padEnd(24)}${help} (default ${DEFAULT_LIMITS[limit as keyof ServerLimits] as number / unit})`)
  .join('\n')}

The first line printed is "listening on http://HOST:PORT" (with the real port when --port 0).
SIGINT or SIGTERM stops it: queued requests are answered busy, running ones finish, downloads in
flight are cancelled (their partial files are kept, and the next download resumes them).`;

function readPackageVersion(): string {
  const text = readFileSync(new URL('../../package.json', import.meta.url), 'utf8');
  return (JSON.parse(text) as { version: string }).version;
}

/** The work limits every entry point shares, then the server's own. */
function readLimits(values: Record<string, unknown>): ServerLimits {
  const limits: Record<string, number | boolean> = { ...DEFAULT_LIMITS, ...readWorkLimits(values) };
  for (const [flag, { limit, unit }] of Object.entries(LIMIT_FLAGS)) {
    const text = setting(values, flag);
    if (text !== undefined) limits[limit] = integerOption(flag, text, 1) * unit;
  }
  return limits as unknown as ServerLimits;
}

/** `--quiet` or `--verbose` (or LATENT_BRIDGE_QUIET / LATENT_BRIDGE_VERBOSE), not both. */
function readLogLevel(values: Record<string, unknown>): LogLevel {
  const quiet = values.quiet === true || envFlag(process.env[envName('quiet')]);
  const verbose = values.verbose === true || envFlag(process.env[envName('verbose')]);
  if (quiet && verbose) throw new BridgeError('bad_request', '--quiet and --verbose contradict each other; give one');
  return quiet ? 'quiet' : verbose ? 'verbose' : 'normal';
}

/** What to tell a user whose port is taken: by another latent-bridge (then it can simply be used), or by something else. */
async function portTaken(host: string, port: number): Promise<string> {
  const where = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  try {
    const response = await fetch(`http://${where}/healthz`, { signal: AbortSignal.timeout(2_000) });
    const text = await response.text();
    // One started with a token refuses /healthz without it, and says so.
    const ours = response.status === 401 ? text.includes('token') : (JSON.parse(text) as { server?: unknown }).server === 'latent-bridge';
    if (ours) return `another latent-bridge is already serving on ${port}: use it, or choose --port`;
  } catch {
    // Not a latent-bridge (or not answering HTTP): say so below.
  }
  return `port ${port} on ${host} is in use by another program: stop it, or choose --port`;
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
        comfyui: { type: 'string' },
        offline: { type: 'boolean' },
        'exit-with-parent': { type: 'boolean' },
        quiet: { type: 'boolean' },
        verbose: { type: 'boolean' },
        ...WORK_LIMIT_OPTIONS,
        ...(Object.fromEntries(Object.keys(LIMIT_FLAGS).map((flag) => [flag, { type: 'string' }])) as Record<LimitFlag, { type: 'string' }>),
      },
      strict: true,
    });
    const host = setting(values, 'host') ?? DEFAULT_HOST;
    const portText = setting(values, 'port');
    const port = portText === undefined ? DEFAULT_PORT : integerOption('port', portText, 0);
    if (port > 65535) throw new BridgeError('bad_request', `--port must be at most 65535, got ${port}`);
    const token = setting(values, 'token');
    const device = readDevice(values);
    const threadsText = setting(values, 'threads');
    const limits = readLimits(values);
    const log = consoleLog(readLogLevel(values));

    const store = createModelStore(values, log);
    const runtime = await Runtime.create({ device, ...(threadsText !== undefined ? { threads: integerOption('threads', threadsText, 1) } : {}) });
    const engine = new Engine({ source: store, runtime, log });
    let server: RunningServer;
    try {
      server = await startServer({
        host,
        port,
        token,
        limits,
        engine,
        identity: { version: readPackageVersion(), device: runtime.device, deviceNote: runtime.note },
        listModels: () => store.list(),
        log,
      });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error;
      console.error(`latent-bridge serve: ${await portTaken(host, port)}`);
      return 1;
    }
    console.log(`listening on ${server.url}`);
    console.log(`device: ${runtime.device}${runtime.note ? ` (${runtime.note})` : ''}`);
    console.log(`viewer: ${server.url}/${token ? '?token=<your token>' : ''}`);
    const stops = [new Promise<string>((resolve) => onStopSignal(resolve))];
    if (values['exit-with-parent'] === true || envFlag(process.env[envName('exit-with-parent')])) stops.push(parentExited());
    console.log(`${await Promise.race(stops)}: shutting down`);
    await Promise.all([server.close(), store.close()]);
    return 0;
  },
};
