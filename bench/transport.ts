import { SILENT_LOG } from '../src/console-log.ts';
import { fileURLToPath } from 'node:url';
import { Engine } from '../src/engine.ts';
import { DEFAULT_WORK_LIMITS } from '../src/limits.ts';
import { makeLatent, type Latent } from '../src/latent.ts';
import { renderPreview } from '../src/preview.ts';
import { Runtime } from '../src/runtime.ts';
import { DEFAULT_LIMITS } from '../src/server/options.ts';
import { startServer } from '../src/server/server.ts';
import { silentProgress } from '../src/store/download-progress.ts';
import { ModelStore } from '../src/store/store.ts';
import { makeModelsDir } from '../test/support/models-dir.ts';
import { PythonWorker } from './python-worker.ts';
import type { BenchGroup, BenchResult } from './types.ts';

const CLIENT_SCRIPT = fileURLToPath(new URL('./transport_client.py', import.meta.url));
const PREVIEW_RUNS = 200;
const UPSCALE_RUNS = 7;
const WARMUP = 2;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** A deterministic latent; compute time does not depend on the values, so it need not equal the Python client's. */
function sampleLatent(seed: number): Latent {
  const data = new Float32Array(4 * 128 * 128);
  let state = seed;
  for (let i = 0; i < data.length; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = ((state / 2 ** 32) * 2 - 1) * 0.5;
  }
  return makeLatent('v1', 'model', [1, 4, 128, 128], data);
}

/** Median of `runs` timed calls, after `warmup` untimed ones. */
async function timeAlone(runs: number, run: () => unknown | Promise<unknown>, warmup = 0): Promise<number> {
  for (let i = 0; i < warmup; i++) await run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  return median(times);
}

/**
 * Round trips from a Python client (msgpack + websocket-client, as the webui extension talks)
 * against the sidecar in this process, next to the same work done without any transport:
 * a 1x4x128x128 preview and an x2 upscale of a 1x4x128x128 latent on the CPU runtime.
 */
export const transportBench: BenchGroup = async ({ rounds }) => {
  const store = new ModelStore({ modelDirs: [makeModelsDir(['upscaler-v1-x2.0'])], offline: true, progress: silentProgress });
  const engine = new Engine({ source: store, runtime: await Runtime.create({ device: 'cpu', threads: 2 }) });
  const server = await startServer({
    host: '127.0.0.1',
    port: 0,
    limits: DEFAULT_LIMITS,
    engine,
    identity: { version: 'bench', device: engine.device },
    listModels: () => store.list(),
    log: SILENT_LOG,
  });
  const client = new PythonWorker(CLIENT_SCRIPT, [String(server.port)]);
  const previewTrip: number[] = [];
  const previewAlone: number[] = [];
  const upscaleTrip: number[] = [];
  const upscaleAlone: number[] = [];
  try {
    await timeAlone(0, () => engine.perform({ op: 'upscale', latent: sampleLatent(0), target: { height: 256, width: 256 } }, DEFAULT_WORK_LIMITS), WARMUP);
    await client.request({ op: 'upscale', runs: WARMUP, warmup: 0, seed: 0 });
    for (let round = 0; round < rounds; round++) {
      const latent = sampleLatent(round + 1);
      previewAlone.push(await timeAlone(PREVIEW_RUNS, () => renderPreview(latent), WARMUP * 10));
      previewTrip.push((await client.request<{ ms: number }>({ op: 'preview', runs: PREVIEW_RUNS, warmup: WARMUP * 10, seed: round })).ms);
      // One by one, alternating, so both sides see the same machine state.
      for (let run = 0; run < UPSCALE_RUNS; run++) {
        upscaleAlone.push(await timeAlone(1, () => engine.perform({ op: 'upscale', latent, target: { height: 256, width: 256 } }, DEFAULT_WORK_LIMITS)));
        upscaleTrip.push((await client.request<{ ms: number }>({ op: 'upscale', runs: 1, warmup: 0, seed: round })).ms);
      }
    }
  } finally {
    client.close();
    await server.close();
  }
  const previewMs = median(previewTrip);
  const previewBase = median(previewAlone);
  const upscaleMs = median(upscaleTrip);
  const upscaleBase = median(upscaleAlone);
  const upscaleRatio = upscaleMs / upscaleBase;
  const results: BenchResult[] = [
    {
      name: 'preview 1x4x128x128 round trip from Python vs drawing alone',
      ms: previewMs,
      baseline_ms: previewBase,
      ratio: previewMs / previewBase,
      target: 'preview round trip median <= 2 ms',
      ok: previewMs <= 2,
    },
    {
      name: 'upscale x2 1x4x128x128 round trip from Python vs compute alone',
      ms: upscaleMs,
      baseline_ms: upscaleBase,
      ratio: upscaleRatio,
      target: 'upscale transport overhead <= 10% of compute (ratio <= 1.10)',
      ok: upscaleRatio <= 1.1,
    },
  ];
  return results;
};
