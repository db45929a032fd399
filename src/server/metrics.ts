import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

/** Upper bounds, in seconds, of the request latency histogram. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** Event-loop delay is sampled this often (ms); a stall shorter than this is not seen. */
const LOOP_DELAY_RESOLUTION_MS = 10;

interface Histogram {
  readonly counts: number[];
  sum: number;
  count: number;
}

export interface Gauges {
  readonly connections: () => number;
  readonly httpConnections: () => number;
  readonly viewers: () => number;
  readonly queued: () => number;
  readonly running: () => number;
  readonly jobs: () => number;
  readonly previewBytes: () => number;
  readonly unsentBytes: () => number;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Counters for `GET /metrics`, in the Prometheus text format. Label values come from fixed sets (ops, error codes). */
export class Metrics {
  readonly #requests = new Map<string, number>();
  readonly #errors = new Map<string, number>();
  readonly #latency = new Map<string, Histogram>();
  readonly #previews = new Map<string, number>();
  readonly #taesd = new Map<string, number>();
  readonly #loopDelay: IntervalHistogram = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  #rejectedUpgrades = 0;
  #droppedPeers = 0;
  #closedIdleHttp = 0;
  #replyBufferPeak = 0;

  constructor() {
    this.#loopDelay.enable();
  }

  /** Stops sampling the event loop (the server closed). */
  stop(): void {
    this.#loopDelay.disable();
  }

  request(op: string): void {
    this.#requests.set(op, (this.#requests.get(op) ?? 0) + 1);
  }

  error(op: string, code: string): void {
    const key = `op="${escapeLabel(op)}",code="${escapeLabel(code)}"`;
    this.#errors.set(key, (this.#errors.get(key) ?? 0) + 1);
  }

  latency(op: string, seconds: number): void {
    let histogram = this.#latency.get(op);
    if (histogram === undefined) {
      histogram = { counts: LATENCY_BUCKETS.map(() => 0), sum: 0, count: 0 };
      this.#latency.set(op, histogram);
    }
    for (let i = 0; i < LATENCY_BUCKETS.length; i++) if (seconds <= LATENCY_BUCKETS[i]) histogram.counts[i]++;
    histogram.sum += seconds;
    histogram.count++;
  }

  /** `outcome`: drawn, superseded (a newer step came first), pushed (to a viewer), viewer_slow (not pushed), not_kept (image over the hub's byte budget). */
  preview(outcome: 'drawn' | 'superseded' | 'pushed' | 'viewer_slow' | 'not_kept'): void {
    this.#previews.set(outcome, (this.#previews.get(outcome) ?? 0) + 1);
  }

  /** TAESD pictures by outcome: decoded, superseded (a newer step came while one ran), skipped (too many jobs), failed. */
  taesd(outcome: 'decoded' | 'superseded' | 'skipped' | 'failed'): void {
    this.#taesd.set(outcome, (this.#taesd.get(outcome) ?? 0) + 1);
  }

  rejectedUpgrade(): void {
    this.#rejectedUpgrades++;
  }

  /** A WebSocket peer that stopped answering was dropped by the heartbeat. */
  droppedPeer(): void {
    this.#droppedPeers++;
  }

  /** An idle plain HTTP connection was closed to make room for a new one. */
  closedIdleHttp(): void {
    this.#closedIdleHttp++;
  }

  /** Reply bytes one connection has left unsent right after a reply was queued. */
  replyBuffer(bytes: number): void {
    if (bytes > this.#replyBufferPeak) this.#replyBufferPeak = bytes;
  }

  render(gauges: Gauges): string {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string): void => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    };
    family('latent_bridge_requests_total', 'counter', 'Requests received, by op.');
    for (const [op, n] of this.#requests) lines.push(`latent_bridge_requests_total{op="${escapeLabel(op)}"} ${n}`);
    family('latent_bridge_errors_total', 'counter', 'Error replies, by op and error code.');
    for (const [labels, n] of this.#errors) lines.push(`latent_bridge_errors_total{${labels}} ${n}`);
    family('latent_bridge_request_duration_seconds', 'histogram', 'Time from a request arriving to its reply being sent, by op.');
    for (const [op, h] of this.#latency) {
      const label = `op="${escapeLabel(op)}"`;
      LATENCY_BUCKETS.forEach((bound, i) => lines.push(`latent_bridge_request_duration_seconds_bucket{${label},le="${bound}"} ${h.counts[i]}`));
      lines.push(`latent_bridge_request_duration_seconds_bucket{${label},le="+Inf"} ${h.count}`);
      lines.push(`latent_bridge_request_duration_seconds_sum{${label}} ${h.sum}`);
      lines.push(`latent_bridge_request_duration_seconds_count{${label}} ${h.count}`);
    }
    family('latent_bridge_previews_total', 'counter', 'Previews by outcome: drawn, superseded, pushed to a viewer, not pushed to a slow viewer.');
    for (const [outcome, n] of this.#previews) lines.push(`latent_bridge_previews_total{outcome="${outcome}"} ${n}`);
    family('latent_bridge_taesd_previews_total', 'counter', 'TAESD pictures by outcome: decoded, superseded by a newer step, skipped (too many jobs), failed.');
    for (const [outcome, n] of this.#taesd) lines.push(`latent_bridge_taesd_previews_total{outcome="${outcome}"} ${n}`);
    family('latent_bridge_rejected_upgrades_total', 'counter', 'WebSocket upgrades refused (token, origin, host, path or connection limit).');
    lines.push(`latent_bridge_rejected_upgrades_total ${this.#rejectedUpgrades}`);
    family('latent_bridge_dropped_peers_total', 'counter', 'WebSocket peers dropped because they stopped answering pings.');
    lines.push(`latent_bridge_dropped_peers_total ${this.#droppedPeers}`);
    family('latent_bridge_closed_idle_http_total', 'counter', 'Idle plain HTTP connections closed to make room for new ones.');
    lines.push(`latent_bridge_closed_idle_http_total ${this.#closedIdleHttp}`);
    const gauge = (name: string, help: string, value: number): void => {
      family(name, 'gauge', help);
      lines.push(`${name} ${value}`);
    };
    gauge('latent_bridge_queue_depth', 'Inference requests waiting for the runtime.', gauges.queued());
    gauge('latent_bridge_running', 'Inference requests running now.', gauges.running());
    gauge('latent_bridge_connections', 'Open WebSocket connections (clients and viewers).', gauges.connections());
    gauge('latent_bridge_viewers', 'Connections watching previews.', gauges.viewers());
    gauge('latent_bridge_preview_jobs', 'Jobs the viewer hub keeps (running and finished).', gauges.jobs());
    gauge('latent_bridge_preview_bytes', 'Bytes of preview images and their metadata the viewer hub keeps.', gauges.previewBytes());
    gauge('latent_bridge_http_connections', 'Open plain HTTP connections (not WebSockets).', gauges.httpConnections());
    gauge('latent_bridge_unsent_bytes', 'Bytes queued for all WebSocket connections and not yet taken by the network.', gauges.unsentBytes());
    gauge('latent_bridge_reply_buffer_peak_bytes', 'The most reply bytes one connection has had queued and unsent, since start.', this.#replyBufferPeak);
    family('latent_bridge_event_loop_delay_seconds', 'gauge', `Event-loop delay since start, sampled every ${LOOP_DELAY_RESOLUTION_MS} ms: median, 99th percentile and worst.`);
    for (const quantile of [50, 99]) lines.push(`latent_bridge_event_loop_delay_seconds{quantile="${quantile / 100}"} ${this.#loopDelay.percentile(quantile) / 1e9}`);
    lines.push(`latent_bridge_event_loop_delay_seconds{quantile="1"} ${this.#loopDelay.max / 1e9}`);
    return `${lines.join('\n')}\n`;
  }
}
