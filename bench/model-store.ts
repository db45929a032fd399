import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { silentProgress } from '../src/store/download-progress.ts';
import { MODEL_SPECS } from '../src/store/registry.ts';
import { ModelStore, type ModelStoreOptions } from '../src/store/store.ts';
import { pinnedTo } from '../test/support/fake-hub.ts';
import { makeModelsDir, STAND_INS } from '../test/support/models-dir.ts';
import type { BenchGroup, BenchResult } from './types.ts';

const SEQUENTIAL_CALLS = 200;
const BURST_CALLS = 3000;

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function timed(run: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await run();
  return performance.now() - start;
}

/**
 * What `models` requests cost the server: `store.list()` on its one store, against the same calls
 * each made on a fresh store, which has nothing cached and shares nothing (what every call cost
 * before). Ten models on disk, every one verified, so the record holds what a user's would.
 */
export const modelStoreBench: BenchGroup = async ({ rounds }) => {
  const modelsDir = makeModelsDir();
  // The stand-ins play the pinned upscalers, so that verifying them fills the record as real files would.
  const registry = MODEL_SPECS.map((spec) =>
    STAND_INS[spec.name] === undefined ? spec : pinnedTo(spec, readFileSync(path.join(modelsDir, spec.fileName))),
  );
  const work = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-bench-store-'));
  const options: ModelStoreOptions = {
    modelDirs: [modelsDir],
    cacheDir: path.join(work, 'hub'),
    stateDir: path.join(work, 'state'),
    offline: true,
    progress: silentProgress,
    registry,
  };
  const store = new ModelStore(options);
  await store.verify();
  await store.list();

  const sequential = { ours: [] as number[], fresh: [] as number[] };
  const burst = { ours: [] as number[], fresh: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    sequential.ours.push(
      await timed(async () => {
        for (let i = 0; i < SEQUENTIAL_CALLS; i++) await store.list();
      }),
    );
    sequential.fresh.push(
      await timed(async () => {
        for (let i = 0; i < SEQUENTIAL_CALLS; i++) await new ModelStore(options).list();
      }),
    );
    burst.ours.push(await timed(() => Promise.all(Array.from({ length: BURST_CALLS }, () => store.list()))));
    burst.fresh.push(await timed(() => Promise.all(Array.from({ length: BURST_CALLS }, () => new ModelStore(options).list()))));
  }

  const result = (name: string, ours: number[], fresh: number[], maxRatio: number): BenchResult => {
    const ms = median(ours);
    const baseline = median(fresh);
    return { name, ms, baseline_ms: baseline, ratio: ms / baseline, target: `ratio <= ${maxRatio}`, ok: ms / baseline <= maxRatio };
  };
  return [
    // One after another, each call still stats the files (a file dropped in shows at once); only the record parse is saved.
    result(`models list x${SEQUENTIAL_CALLS} one after another: one store vs a fresh store per call`, sequential.ours, sequential.fresh, 1),
    result(`models list x${BURST_CALLS} at once: one store vs a fresh store per call`, burst.ours, burst.fresh, 0.05),
  ];
};
