import { createServer, STATUS_CODES, type IncomingMessage } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { consoleLog } from '../console-log.ts';
import { BridgeError } from '../errors.ts';
import { PROTOCOL_VERSION } from '../protocol/messages.ts';
import { AccessPolicy, isLoopbackHost } from './access.ts';
import { ClientSession, type SessionContext } from './client-session.ts';
import { Heartbeat } from './heartbeat.ts';
import { printable } from './log-text.ts';
import { createHttpHandler } from './http-routes.ts';
import { HTTP_TIMEOUTS, PlainHttpSockets } from './http-sockets.ts';
import { Metrics } from './metrics.ts';
import { ModelListing } from './model-listing.ts';
import type { ServerOptions } from './options.ts';
import { PreviewDesk } from './preview-desk.ts';
import { TaesdDesk } from './taesd-desk.ts';
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
  const log = options.log ?? consoleLog('normal');
  const metrics = new Metrics();
  const scheduler = new FairScheduler({ concurrency: limits.concurrency, maxPerClient: limits.maxJobsPerClient, maxQueued: limits.maxQueue });
  const hub = new ViewerHub(
    { maxJobs: limits.maxPreviewJobs, maxBytes: limits.maxPreviewBytes, idleMs: options.previewIdleMs ?? 30_000, maxViewerBuffer: limits.maxViewerBuffer },
    metrics,
  );
  // TAESD decodes: one per job at a time, for at most as many jobs as the hub keeps.
  const taesd = new TaesdDesk(options.engine, scheduler, metrics, log, { maxJobs: limits.maxPreviewJobs, retryMs: 60_000 });
  const desk = new PreviewDesk(hub, metrics, taesd);
  const access = new AccessPolicy({ token: options.token });
  const models = new ModelListing(options.listModels);
  const context: SessionContext = { limits, identity: options.identity, engine: options.engine, models, scheduler, hub, desk, metrics, log };
  const sessions = new Map<WebSocket, ClientSession>();
  let nextSessionId = 1;

  const heartbeat = new Heartbeat<WebSocket>({
    intervalMs: limits.heartbeatMs,
    onSilent: (ws, silentMs) => {
      metrics.droppedPeer();
      log.warn(`dropped ${sessions.get(ws)?.label ?? 'a connection'}: no sign of life for ${(silentMs / 1000).toFixed(1)} s, not even an answer to a ping`);
      ws.terminate();
    },
  });
  // The protocol uses no subprotocol (docs/protocol.md §1): never echo one a client offers.
  const wss = new WebSocketServer({ noServer: true, maxPayload: limits.maxPayload, perMessageDeflate: false, clientTracking: false, handleProtocols: () => false });
  const http = createServer(
    {
      headersTimeout: HTTP_TIMEOUTS.headersTimeout,
      requestTimeout: HTTP_TIMEOUTS.requestTimeout,
      keepAliveTimeout: HTTP_TIMEOUTS.keepAliveTimeout,
      connectionsCheckingInterval: HTTP_TIMEOUTS.connectionsCheckingInterval,
      // TCP keepalive also finds dead peers where the WebSocket heartbeat cannot (plain HTTP).
      keepAlive: true,
      keepAliveInitialDelay: limits.heartbeatMs,
    },
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
          httpConnections: () => plainSockets.size,
          viewers: () => hub.viewerCount,
          queued: () => scheduler.queued,
          running: () => scheduler.running,
          jobs: () => hub.jobCount,
          previewBytes: () => hub.keptBytes,
          unsentBytes: () => [...sessions.keys()].reduce((sum, ws) => sum + ws.bufferedAmount, 0),
        }),
    }),
  );
  http.timeout = HTTP_TIMEOUTS.idleTimeout;
  const plainSockets = new PlainHttpSockets(limits.maxHttpConnections, () => metrics.closedIdleHttp());
  plainSockets.attach(http);

  http.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    plainSockets.upgraded(socket as Socket);
    socket.on('error', () => socket.destroy());
    const url = requestTarget(request);
    const refuse = (status: number, message: string): void => {
      metrics.rejectedUpgrade();
      log.info(`refused a connection from ${(socket as Socket).remoteAddress ?? 'an unknown address'} (${status}): ${printable(message)}`);
      refuseUpgrade(socket, status, message);
    };
    if (url === undefined || !WEBSOCKET_PATHS.has(url.pathname)) return refuse(404, `no WebSocket at ${request.url ?? ''}; use /ws`);
    const decision = access.checkUpgrade(request, url);
    if (!decision.ok) return refuse(decision.status, decision.message);
    if (sessions.size >= limits.maxConnections) return refuse(503, `the server has ${sessions.size} connections (limit ${limits.maxConnections})`);
    wss.handleUpgrade(request, socket, head, (ws) => {
      const session = new ClientSession(nextSessionId++, ws, context);
      sessions.set(ws, session);
      log.info(`${session.label} connected from ${(socket as Socket).remoteAddress ?? 'an unknown address'} (${sessions.size} open)`);
      heartbeat.add(ws);
      ws.on('message', (data, isBinary) => {
        heartbeat.heard(ws);
        session.handleFrame(data, isBinary);
      });
      ws.on('pong', () => heartbeat.heard(ws));
      ws.on('ping', () => heartbeat.heard(ws));
      ws.on('error', () => ws.terminate());
      ws.on('close', (code) => {
        heartbeat.remove(ws);
        sessions.delete(ws);
        session.close();
        log.info(`${session.label} left (close code ${code}; ${sessions.size} open)`);
      });
    });
  });

  const sweeper = setInterval(() => hub.sweep(), SWEEP_INTERVAL_MS);
  sweeper.unref();
  heartbeat.start();

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
    heartbeat.stop();
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
    metrics.stop();
  };

  return {
    url: `http://${urlHost(options.host)}:${port}`,
    port,
    close: () => (closing ??= close()),
  };
}
