/** Upper bounds, in seconds, of the request latency histogram. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

interface Histogram {
  readonly counts: number[];
  sum: number;
  count: number;
}

export interface Gauges {
  readonly connections: () => number;
  readonly viewers: () => number;
  readonly queued: () => number;
  readonly running: () => number;
  readonly jobs: () => number;
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
  #rejectedUpgrades = 0;

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

  /** `outcome`: drawn, superseded (a newer step came first), pushed (to a viewer), viewer_slow (not pushed). */
  preview(outcome: 'drawn' | 'superseded' | 'pushed' | 'viewer_slow'): void {
    this.#previews.set(outcome, (this.#previews.get(outcome) ?? 0) + 1);
  }

  rejectedUpgrade(): void {
    this.#rejectedUpgrades++;
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
    family('latent_bridge_rejected_upgrades_total', 'counter', 'WebSocket upgrades refused (token, origin, host, path or connection limit).');
    lines.push(`latent_bridge_rejected_upgrades_total ${this.#rejectedUpgrades}`);
    const gauge = (name: string, help: string, value: number): void => {
      family(name, 'gauge', help);
      lines.push(`${name} ${value}`);
    };
    gauge('latent_bridge_queue_depth', 'Inference requests waiting for the runtime.', gauges.queued());
    gauge('latent_bridge_running', 'Inference requests running now.', gauges.running());
    gauge('latent_bridge_connections', 'Open WebSocket connections (clients and viewers).', gauges.connections());
    gauge('latent_bridge_viewers', 'Connections watching previews.', gauges.viewers());
    gauge('latent_bridge_preview_jobs', 'Jobs the viewer hub keeps (running and finished).', gauges.jobs());
    return `${lines.join('\n')}\n`;
  }
}
