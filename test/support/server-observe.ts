import { readFileSync } from 'node:fs';

/** Resident memory of a process, from /proc/PID/status (Linux). */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (match === null) throw new Error(`no VmRSS for process ${pid}`);
  return Number(match[1]) * 1024;
}

/** One sample of `GET /metrics`, e.g. `metric(text, 'latent_bridge_dropped_peers_total')` or with `'{op="models",code="busy"}'`. */
export function metric(text: string, name: string, labels = ''): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  if (line === undefined) throw new Error(`no sample ${name}${labels} in /metrics`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

export async function fetchMetrics(baseUrl: string): Promise<string> {
  const response = await fetch(`${baseUrl}/metrics`);
  return response.text();
}

/** Resolves once `test` holds, checking every `everyMs`; for state the server reaches in its own time (a heartbeat). */
export async function until(test: () => boolean | Promise<boolean>, everyMs = 25): Promise<void> {
  while (!(await test())) await new Promise((resolve) => setTimeout(resolve, everyMs));
}
