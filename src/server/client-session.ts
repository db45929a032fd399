import type { RawData, WebSocket } from 'ws';
import type { ConsoleLog } from '../console-log.ts';
import { BridgeError, errorCode } from '../errors.ts';
import { decodeMessage, encodeMessage } from '../protocol/codec.ts';
import { OPS, parseRequest, peekRequestId, type ReplyBody, type Request, type RequestId } from '../protocol/messages.ts';
import { planJob } from '../planner.ts';
import { printable } from './log-text.ts';
import type { Metrics } from './metrics.ts';
import type { ModelListing } from './model-listing.ts';
import { helloReply, runInference, type InferenceEngine, type ServerIdentity } from './operations.ts';
import type { ServerLimits } from './options.ts';
import type { PreviewDesk } from './preview-desk.ts';
import type { FairScheduler } from './scheduler.ts';
import type { ViewerHub } from './viewer-hub.ts';

/** Everything a connection shares with the others. */
export interface SessionContext {
  readonly limits: ServerLimits;
  readonly identity: ServerIdentity;
  readonly engine: InferenceEngine;
  readonly models: ModelListing;
  readonly scheduler: FairScheduler;
  readonly hub: ViewerHub;
  readonly desk: PreviewDesk;
  readonly metrics: Metrics;
  readonly log: ConsoleLog;
}

/** The limits a client may want to know, sent in the `hello` reply. */
export function publicLimits(limits: ServerLimits): object {
  return {
    max_payload: limits.maxPayload,
    max_frame_items: limits.maxFrameItems,
    max_frame_depth: limits.maxFrameDepth,
    max_frame_string_bytes: limits.maxFrameStringBytes,
    max_elements: limits.maxElements,
    max_side: limits.maxSide,
    max_scale: limits.maxScale,
    max_requests_per_client: limits.maxRequestsPerClient,
    max_jobs_per_client: limits.maxJobsPerClient,
  };
}

function opLabel(message: unknown): string {
  const op = typeof message === 'object' && message !== null ? (message as { op?: unknown }).op : undefined;
  return typeof op === 'string' && (OPS as readonly string[]).includes(op) ? op : 'invalid';
}

/**
 * One WebSocket connection: decodes and validates each frame, answers it, and keeps the
 * connection open after a bad request. Replies it cannot deliver fast enough stop the
 * server from reading more of this client's requests, without holding up anyone else.
 *
 * What one connection can make the server hold is bounded before any work starts: requests
 * in flight (of every op) by `maxRequestsPerClient`, unread replies by `maxClientBuffer`
 * (a request that comes while more are waiting is answered `busy`, not run), and `watch`
 * snapshots to one per connection.
 */
export class ClientSession {
  readonly id: number;
  readonly #ws: WebSocket;
  readonly #ctx: SessionContext;
  /** How viewers see this client: its `hello` name, or a stand-in. */
  #client: string;
  #named = false;
  #inFlight = 0;
  #watching = false;
  #paused = false;
  #closed = false;

  constructor(id: number, ws: WebSocket, ctx: SessionContext) {
    this.id = id;
    this.#ws = ws;
    this.#ctx = ctx;
    this.#client = `client #${id}`;
  }

  /** How the logs name this connection; the client's own name is escaped, so it cannot forge log lines. */
  get label(): string {
    return this.#named ? `connection #${this.id} (client ${printable(this.#client)})` : `connection #${this.id}`;
  }

  handleFrame(data: RawData, isBinary: boolean): void {
    const started = performance.now();
    if (!isBinary) {
      this.#fail(null, 'invalid', started, new BridgeError('bad_request', 'frames must be binary msgpack maps, not text'));
      return;
    }
    const frame = Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data;
    let message: unknown;
    try {
      message = decodeMessage(frame, this.#ctx.limits);
    } catch (error) {
      this.#fail(null, 'invalid', started, error);
      return;
    }
    const op = opLabel(message);
    let request: Request;
    try {
      request = parseRequest(message, this.#ctx.limits);
    } catch (error) {
      this.#fail(peekRequestId(message), op, started, error);
      return;
    }
    this.#ctx.metrics.request(op);
    const refusal = this.#refusal();
    if (refusal !== undefined) {
      this.#fail(request.id, op, started, refusal);
      return;
    }
    this.#dispatch(request, started);
  }

  /** The connection is gone: drop its waiting work, keep its previews on show as finished. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const gone = new BridgeError('internal', 'the connection closed');
    this.#ctx.scheduler.cancelClient(String(this.id), gone);
    this.#ctx.desk.dropOwner(this.id);
    this.#ctx.hub.unwatch(this.#ws);
    this.#ctx.hub.finishOwner(this.id);
  }

  /** Why a valid request is not taken now, if it is not: checked before any of its work starts. */
  #refusal(): BridgeError | undefined {
    const { maxClientBuffer, maxRequestsPerClient } = this.#ctx.limits;
    const unread = this.#ws.bufferedAmount;
    if (unread > maxClientBuffer) {
      return new BridgeError('busy', `${unread} bytes of replies to this connection are still unread (limit ${maxClientBuffer}); read them before sending more`);
    }
    if (this.#inFlight >= maxRequestsPerClient) {
      return new BridgeError(
        'busy',
        `this connection already has ${this.#inFlight} requests in flight (limit ${maxRequestsPerClient}, --max-requests-per-client); wait for a reply first`,
      );
    }
    return undefined;
  }

  #dispatch(request: Request, started: number): void {
    const { id, op } = request;
    this.#inFlight++;
    const succeed = (body: ReplyBody): void => {
      this.#inFlight--;
      this.#succeed(id, op, started, body);
    };
    const fail = (error: unknown): void => {
      this.#inFlight--;
      this.#fail(id, op, started, error);
    };
    /** A `noreply` request that succeeded: done, without a reply. */
    const done = (): void => {
      this.#inFlight--;
      this.#ctx.metrics.latency(op, (performance.now() - started) / 1000);
    };
    switch (request.op) {
      case 'hello':
        if (request.client !== undefined) {
          this.#client = request.client;
          this.#named = true;
        }
        succeed(helloReply(this.#ctx.identity, publicLimits(this.#ctx.limits)));
        return;
      case 'models':
        this.#ctx.models.get().then((models) => succeed({ models }), fail);
        return;
      case 'watch':
        if (this.#watching) {
          fail(new BridgeError('bad_request', 'this connection already watches: the first watch reply held every job, and events follow it'));
          return;
        }
        this.#watching = true;
        succeed({ jobs: this.#ctx.hub.watch(this.#ws) });
        return;
      case 'preview': {
        const noreply = request.preview.noreply;
        this.#ctx.desk.submit({
          owner: this.id,
          client: this.#client,
          input: request.input,
          preview: request.preview,
          settle: (outcome) => (noreply ? done() : succeed(outcome)),
          notify: (event) => this.#notify(event),
        });
        return;
      }
      case 'end': {
        const ended = this.#ctx.desk.end(this.id, request.end);
        if (request.end.noreply) done();
        else succeed({ ended });
        return;
      }
      case 'upscale':
      case 'interpose':
      case 'hires':
        try {
          const plan = planJob(request.job, this.#ctx.limits);
          const { engine, scheduler } = this.#ctx;
          scheduler.submit(String(this.id), () => runInference(engine, request, plan), () => engine.prepare(plan)).then(succeed, fail);
        } catch (error) {
          fail(error);
        }
        return;
    }
  }

  #succeed(id: RequestId, op: string, started: number, body: ReplyBody): void {
    this.#send({ id, ok: true, ...body });
    const seconds = (performance.now() - started) / 1000;
    this.#ctx.metrics.latency(op, seconds);
    this.#ctx.log.detail(`${this.label}: ${op} answered in ${(seconds * 1000).toFixed(1)} ms`);
  }

  #fail(id: RequestId | null, op: string, started: number, error: unknown): void {
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    if (code === 'internal' && !this.#closed) this.#ctx.log.warn(`internal error in ${op} from ${this.label}: ${error instanceof Error ? (error.stack ?? message) : message}`);
    this.#ctx.metrics.error(op, code);
    this.#ctx.log.detail(`${this.label}: ${op} refused, ${code}: ${printable(message)}`);
    this.#send({ id, ok: false, error: { code, message } });
    this.#ctx.metrics.latency(op, (performance.now() - started) / 1000);
  }

  /**
   * An event that is no reply (a TAESD picture): worth sending only while the client keeps up,
   * since a newer one follows; never one that would put its unread bytes over half the bound.
   */
  #notify(event: object): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN || this.#ws.bufferedAmount > this.#ctx.limits.maxClientBuffer / 2) return;
    this.#send(event);
  }

  #send(message: object): void {
    if (this.#closed || this.#ws.readyState !== this.#ws.OPEN) return;
    const limit = this.#ctx.limits.maxClientBuffer;
    this.#ws.send(encodeMessage(message), () => {
      if (this.#paused && this.#ws.bufferedAmount <= limit / 2) {
        this.#paused = false;
        this.#ws.resume();
      }
    });
    const unsent = this.#ws.bufferedAmount;
    this.#ctx.metrics.replyBuffer(unsent);
    if (!this.#paused && unsent > limit) {
      this.#paused = true;
      this.#ws.pause();
    }
  }
}
