import { fileURLToPath } from 'node:url';
import { buildNetwork } from '../src/networks/network.ts';
import { Runtime, type LoadedNetwork } from '../src/runtime.ts';
import { readSafetensors } from '../src/safetensors.ts';
import { tensor4, type Tensor4 } from '../src/tensor.ts';
import { runTiled } from '../src/tiling.ts';
import { DEFAULT_TILE_SIZE } from '../src/engine.ts';
import { conformanceCase, factorOf, seededData, weightsPath } from '../test/support/conformance.ts';
import { PythonWorker } from './python-worker.ts';
import type { BenchGroup, BenchResult } from './types.ts';

const TORCH_SCRIPT = fileURLToPath(new URL('./torch_networks.py', import.meta.url));
const RUNS = 7;
const WARMUP = 2;

/** Full-size layouts: the interposer as shipped (64 channels, 12 blocks) and the x2 upscaler (depth 16). */
const NETWORKS = { interposer: 'interposer-xl-to-v1', upscaler: 'upscaler-x2.0' } as const;
const CASES: { name: string; network: keyof typeof NETWORKS; side: number }[] = [
  { name: 'interposer 64x64', network: 'interposer', side: 64 },
  { name: 'interposer 128x128', network: 'interposer', side: 128 },
  { name: 'upscaler x2 64x64 -> 128x128', network: 'upscaler', side: 64 },
  { name: 'upscaler x2 128x128 -> 256x256', network: 'upscaler', side: 128 },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

async function timeOurs(network: LoadedNetwork, input: Tensor4): Promise<{ ms: number; checksum: number }> {
  const run = () => runTiled((tile) => network.run(tile), network.graph, input, DEFAULT_TILE_SIZE);
  for (let i = 0; i < WARMUP; i++) await run();
  const times: number[] = [];
  let out: Tensor4 | undefined;
  for (let i = 0; i < RUNS; i++) {
    const start = performance.now();
    out = await run();
    times.push(performance.now() - start);
  }
  return { ms: median(times), checksum: (out as Tensor4).data.reduce((a, b) => a + b, 0) };
}

/**
 * Our onnxruntime networks against a PyTorch eager CPU implementation of the same networks with
 * the same weights and thread count, interleaved round by round so both see the same machine.
 */
export const networksBench: BenchGroup = async ({ rounds }) => {
  const threads = 2;
  const runtime = await Runtime.create({ device: 'cpu', threads });
  const torch = new PythonWorker(TORCH_SCRIPT, [String(threads)]);
  try {
    const loaded = new Map<string, LoadedNetwork>();
    for (const [key, name] of Object.entries(NETWORKS)) {
      const c = conformanceCase(name);
      loaded.set(key, await runtime.load(buildNetwork(c.kind, await readSafetensors(weightsPath(c)), factorOf(c), c.weights)));
      await torch.request({ op: 'load', name: key, kind: c.kind, config: c.config, weights: weightsPath(c) });
    }
    const ours = new Map<string, number[]>();
    const theirs = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const c of CASES) {
        const shape = [1, 4, c.side, c.side];
        const input = tensor4(shape, seededData(4 * c.side * c.side, round + 1));
        const mine = await timeOurs(loaded.get(c.network) as LoadedNetwork, input);
        const hex = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength).toString('hex');
        const baseline = await torch.request<{ ms: number; checksum: number }>({ op: 'time', name: c.network, shape, input: hex, runs: RUNS, warmup: WARMUP });
        if (Math.abs(mine.checksum - baseline.checksum) > 1e-3 * Math.max(1, Math.abs(baseline.checksum))) {
          throw new Error(`${c.name}: our output (sum ${mine.checksum}) differs from PyTorch's (sum ${baseline.checksum})`);
        }
        ours.set(c.name, [...(ours.get(c.name) ?? []), mine.ms]);
        theirs.set(c.name, [...(theirs.get(c.name) ?? []), baseline.ms]);
      }
    }
    return CASES.map((c): BenchResult => {
      const ms = median(ours.get(c.name) as number[]);
      const baselineMs = median(theirs.get(c.name) as number[]);
      const ratio = ms / baselineMs;
      return { name: `${c.name} (onnxruntime cpu vs PyTorch eager)`, ms, baseline_ms: baselineMs, ratio, target: 'ratio <= 0.6', ok: ratio <= 0.6 };
    });
  } finally {
    torch.close();
  }
};
