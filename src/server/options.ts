import type { ConsoleLog } from '../console-log.ts';
import { DEFAULT_WORK_LIMITS, type WorkLimits } from '../limits.ts';
import { DEFAULT_FRAME_BOUNDS, type FrameBounds } from '../protocol/frame-structure.ts';
import type { InferenceEngine, ServerIdentity } from './operations.ts';

export const DEFAULT_HOST = '127.0.0.1';
export const DEFAULT_PORT = 7877;

/**
 * Bounds that keep memory and CPU finite whatever clients send: the work limits every entry point
 * shares (src/limits.ts), the structure of one frame, and the server's own.
 */
export interface ServerLimits extends WorkLimits, FrameBounds {
  /** Largest WebSocket message in bytes; a bigger one closes that connection (code 1009). */
  readonly maxPayload: number;
  /** Requests of any kind one connection may have in flight (read, not yet answered); more are answered `busy`. */
  readonly maxRequestsPerClient: number;
  /** Inference requests one connection may have queued or running; more are answered `busy`. */
  readonly maxJobsPerClient: number;
  /** Inference requests waiting across all connections; more are answered `busy`. */
  readonly maxQueue: number;
  /** Inference requests run at the same time. */
  readonly concurrency: number;
  /** Open WebSocket connections; further upgrades get HTTP 503. */
  readonly maxConnections: number;
  /** Plain HTTP connections (not WebSockets); a new one closes the one idle longest. */
  readonly maxHttpConnections: number;
  /** Reply bytes a client may leave unread before the server stops reading its requests and answers `busy`. */
  readonly maxClientBuffer: number;
  /** Bytes a viewer may leave unread before previews to it are skipped. */
  readonly maxViewerBuffer: number;
  /** Preview jobs the viewer hub remembers (running and finished). */
  readonly maxPreviewJobs: number;
  /** Bytes of preview images the viewer hub keeps, which is also the most a `watch` snapshot holds. */
  readonly maxPreviewBytes: number;
  /** A peer silent this long is pinged, and dropped when it stays silent as long again. */
  readonly heartbeatMs: number;
}

export const DEFAULT_LIMITS: ServerLimits = {
  ...DEFAULT_WORK_LIMITS,
  // Room for a latent of max_elements float32 values and its fields; receiving and copying a
  // bigger frame stalls the event loop past 100 ms on a small machine (npm run bench).
  maxPayload: 16 * 1024 * 1024,
  ...DEFAULT_FRAME_BOUNDS,
  maxRequestsPerClient: 32,
  maxJobsPerClient: 4,
  maxQueue: 64,
  concurrency: 1,
  maxConnections: 32,
  maxHttpConnections: 64,
  maxClientBuffer: 16 * 1024 * 1024,
  maxViewerBuffer: 2 * 1024 * 1024,
  maxPreviewJobs: 32,
  maxPreviewBytes: 16 * 1024 * 1024,
  heartbeatMs: 30_000,
};

export interface ServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  /** Required unless `host` is a loopback address. */
  readonly token?: string;
  readonly limits: ServerLimits;
  readonly engine: InferenceEngine;
  readonly identity: ServerIdentity;
  /** Status of every known network: available, where from, or why not. */
  readonly listModels: () => Promise<readonly object[]>;
  /** A running job with no preview for this long is shown as finished. */
  readonly previewIdleMs?: number;
  /** Where the server says what it does; default: the console at the normal level. */
  readonly log?: ConsoleLog;
}
