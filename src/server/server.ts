import { createServer, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { BridgeError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { AccessPolicy, isLoopbackHost } from './access.ts';
import { ClientSession, type SessionContext } from './client-session.ts';
import { createHttpHandler } from './http-routes.ts';
import { Metrics } from './metrics.ts';
import type { ServerOptions } from './options.ts';
import { PreviewDesk } from './preview-desk.ts';
import { requestTarget } from './request-target.ts';
import { FairScheduler } from './scheduler.ts';
import { ViewerHub } from './viewer-hub.ts';

export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:7877`; the WebSocket is at `${url}/ws`. */
  readonly url: string;
  readonly port: number;
  /** Stops accepting, answers queued requests `busy`, lets running ones finish, closes every connection. */
  close(): Promise<void>;
}

const WEBSOCKET_PATHS = new Set(['/ws', '/']);
const SWEEP_INTERVAL_MS = 5_000;

function urlHost(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

function refuseUpgrade(socket: Duplex, status: number, message: string): void {
  const body = `${message}\n`;
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}

/** Starts the HTTP + WebSocket server on one port. */
export async function startServer(options: ServerOptions): Promise<RunningServer> {
  if (!isLoopbackHost(options.host) && !options.token) {
    throw new BridgeError(
      'unauthorized',
      `refusing to listen on ${options.host} without a token: anyone on the network could use it. Pass --token <secret> (or set LATENT_BRIDGE_TOKEN), or listen on 127.0.0.1`,
    );
  }
  const { limits } = options;
  const log = options.log ?? ((line: string) => console.error(line));
  const metrics = new Metrics();
  const scheduler = new FairScheduler({ concurrency: limits.concurrency, maxPerClient: limits.maxJobsPerClient, maxQueued: limits.maxQueue });
  const hub = new ViewerHub({ maxJobs: limits.maxPreviewJobs, idleMs: options.previewIdleMs ?? 30_000, maxViewerBuffer: limits.maxViewerBuffer }, metrics);
  const desk = new PreviewDesk(hub, metrics);
  const access = new AccessPolicy({ token: options.token });
  const context: SessionContext = { limits, identity: options.identity, engine: options.engine, listModels: options.listModels, scheduler, hub, desk, metrics, log };
  const sessions = new Map<WebSocket, ClientSession>();
  let nextSessionId = 1;

  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxPayload, perMessageDeflate: false, clientTracking: false });
  const http = createServer(
    createHttpHandler(access, {
      health: () => ({
        ok: true,
        server: 'latent-bridge',
        version: options.identity.version,
        protocol: PROTOCOL_VERSION,
        device: options.identity.device,
        ...(options.identity.deviceNote ? { device_note: options.identity.deviceNote } : {}),
        models_loaded: options.engine.loadedModels(),
        connections: sessions.size,
        queue: { waiting: scheduler.queued, running: scheduler.running },
      }),
      metrics: () =>
        metrics.render({
          connections: () => sessions.size,
          viewers: () => hub.viewerCount,
          queued: () => scheduler.queued,
          running: () => scheduler.running,
          jobs: () => hub.jobCount,
        }),
    }),
  );

  http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    const url = requestTarget(request);
    const refuse = (status: number, message: string): void => {
      metrics.rejectedUpgrade();
      refuseUpgrade(socket, status, message);
    };
    if (url === undefined || !WEBSOCKET_PATHS.has(url.pathname)) return refuse(404, `no WebSocket at ${request.url ?? ''}; use /ws`);
    const decision = access.checkUpgrade(request, url);
    if (!decision.ok) return refuse(decision.status, decision.message);
    if (sessions.size >= limits.maxConnections) return refuse(503, `the server has ${sessions.size} connections (limit ${limits.maxConnections})`);
    wss.handleUpgrade(request, socket, head, (ws) => {
      const session = new ClientSession(nextSessionId++, ws, context);
      sessions.set(ws, session);
      ws.on('message', (data, isBinary) => session.handleFrame(data, isBinary));
      ws.on('error', () => ws.terminate());
      ws.on('close', () => {
        sessions.delete(ws);
        session.close();
      });
    });
  });

  const sweeper = setInterval(() => hub.sweep(), SWEEP_INTERVAL_MS);
  sweeper.unref();

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(options.port, options.host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  const close = async (): Promise<void> => {
    clearInterval(sweeper);
    const stopped = new Promise<void>((resolve) => http.close(() => resolve()));
    http.closeIdleConnections();
    await scheduler.drain(new BridgeError('busy', 'the server is shutting down'));
    for (const ws of sessions.keys()) ws.close(1001, 'server shutting down');
    const deadline = setTimeout(() => {
      for (const ws of sessions.keys()) ws.terminate();
      http.closeAllConnections();
    }, 2_000);
    await stopped;
    clearTimeout(deadline);
  };

  return {
    url: `http://${urlHost(options.host)}:${port}`,
    port,
    close: () => (closing ??= close()),
  };
}
