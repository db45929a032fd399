import type { Server, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Node's HTTP server times out a request whose headers or body come too slowly, and a
 * keep-alive connection between requests, but never a connection that sends nothing at all.
 * These close every plain HTTP connection that idles, however it idles.
 */
export const HTTP_TIMEOUTS = {
  /** The request headers must be complete this long after the request started. */
  headersTimeout: 10_000,
  /** The whole request must have arrived this long after it started. */
  requestTimeout: 30_000,
  /** A kept-alive connection may wait this long for its next request. */
  keepAliveTimeout: 5_000,
  /** A connection that sends and receives nothing for this long is closed, requests or not. */
  idleTimeout: 30_000,
  /** How often Node checks the headers and request timeouts. */
  connectionsCheckingInterval: 1_000,
} as const;

/**
 * Counts the plain HTTP connections (those not upgraded to a WebSocket) and keeps them at
 * `max`: a new one closes the connection that has been idle longest, i.e. not in the middle of
 * a request. Idle sockets, opened by a client that never sends a request, cannot then lock out
 * the webui or the viewer, whose WebSocket upgrades also start as plain HTTP connections.
 */
export class PlainHttpSockets {
  readonly #max: number;
  readonly #onClosedIdle: () => void;
  /** Sockets in the order they were last active, oldest first; true while a request is being served. */
  readonly #sockets = new Map<Socket, boolean>();

  constructor(max: number, onClosedIdle: () => void) {
    this.#max = max;
    this.#onClosedIdle = onClosedIdle;
  }

  get size(): number {
    return this.#sockets.size;
  }

  /** Starts counting `server`'s connections; call `upgraded` from its 'upgrade' handler. */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => this.#opened(socket));
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      const socket = request.socket;
      this.#touch(socket, true);
      response.once('close', () => this.#touch(socket, false));
    });
  }

  /** The socket left HTTP for a WebSocket (or a refused upgrade that is closing). */
  upgraded(socket: Socket): void {
    this.#sockets.delete(socket);
  }

  #opened(socket: Socket): void {
    socket.once('close', () => this.#sockets.delete(socket));
    if (this.#sockets.size >= this.#max) {
      const idle = [...this.#sockets].find(([, busy]) => !busy)?.[0];
      if (idle === undefined) {
        // Every connection is being answered right now: the newcomer waits its turn by retrying.
        socket.destroy();
        return;
      }
      this.#sockets.delete(idle);
      idle.destroy();
      this.#onClosedIdle();
    }
    this.#sockets.set(socket, false);
  }

  #touch(socket: Socket, busy: boolean): void {
    if (!this.#sockets.has(socket)) return;
    // Re-inserting moves it to the back: the order is that of last activity.
    this.#sockets.delete(socket);
    this.#sockets.set(socket, busy);
  }
}
