import type { RawData, WebSocket } from 'ws';
import { BridgeError, errorCode } from '../errors.ts';
import { decodeMessage, encodeMessage } from '../protocol/codec.ts';
import { OPS, parseRequest, peekRequestId, type ReplyBody, type Request, type RequestId } from '../protocol/messages.ts';
import { planJob } from '../planner.ts';
import type { Metrics } from './metrics.ts';
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
  readonly listModels: () => Promise<readonly object[]>;
  readonly scheduler: FairScheduler;
  readonly hub: ViewerHub;
  readonly desk: PreviewDesk;
  readonly metrics: Metrics;
  readonly log: (line: string) => void;
}

/** The limits a client may want to know, sent in the `hello` reply. */
export function publicLimits(limits: ServerLimits): object {
  return {
    max_payload: limits.maxPayload,
    max_elements: limits.maxElements,
    max_side: limits.maxSide,
    max_scale: limits.maxScale,
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
 */
export class ClientSession {
  readonly id: number;
  readonly #ws: WebSocket;
  readonly #ctx: SessionContext;
  #client: string;
  #paused = false;
  #closed = false;

  constructor(id: number, ws: WebSocket, ctx: SessionContext) {
    this.id = id;
    this.#ws = ws;
    this.#ctx = ctx;
    this.#client = `client #${id}`;
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
      message = decodeMessage(frame);
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

  #dispatch(request: Request, started: number): void {
    const { id, op } = request;
    switch (request.op) {
      case 'hello':
        if (request.client !== undefined) this.#client = request.client;
        this.#succeed(id, op, started, helloReply(this.#ctx.identity, publicLimits(this.#ctx.limits)));
        return;
      case 'models':
        this.#ctx.listModels().then(
          (models) => this.#succeed(id, op, started, { models }),
          (error: unknown) => this.#fail(id, op, started, error),
        );
        return;
      case 'watch': {
        const jobs = this.#ctx.hub.watch(this.#ws);
        this.#succeed(id, op, started, { jobs });
        return;
      }
      case 'preview': {
        const noreply = request.preview.noreply;
        this.#ctx.desk.submit({
          owner: this.id,
          client: this.#client,
          input: request.input,
          preview: request.preview,
          settle: (outcome) => {
            if (noreply) this.#ctx.metrics.latency(op, (performance.now() - started) / 1000);
            else this.#succeed(id, op, started, outcome);
          },
        });
        return;
      }
      case 'upscale':
      case 'interpose':
      case 'hires':
        try {
          const plan = planJob(request.job, this.#ctx.limits);
          const { engine, scheduler } = this.#ctx;
          scheduler
            .submit(String(this.id), () => runInference(engine, request, plan), () => engine.prepare(plan))
            .then(
              (body) => this.#succeed(id, op, started, body),
              (error: unknown) => this.#fail(id, op, started, error),
            );
        } catch (error) {
          this.#fail(id, op, started, error);
        }
        return;
    }
  }

  #succeed(id: RequestId, op: string, started: number, body: ReplyBody): void {
    this.#send({ id, ok: true, ...body });
    this.#ctx.metrics.latency(op, (performance.now() - started) / 1000);
  }

  #fail(id: RequestId | null, op: string, started: number, error: unknown): void {
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    if (code === 'internal' && !this.#closed) this.#ctx.log(`internal error in ${op} from ${this.#client}: ${error instanceof Error ? (error.stack ?? message) : message}`);
    this.#ctx.metrics.error(op, code);
    this.#send({ id, ok: false, error: { code, message } });
    this.#ctx.metrics.latency(op, (performance.now() - started) / 1000);
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
    if (!this.#paused && this.#ws.bufferedAmount > limit) {
      this.#paused = true;
      this.#ws.pause();
    }
  }
}
