import { fileURLToPath } from 'node:url';
import { buildNetwork } from '../src/networks/network.ts';
import { Runtime, type LoadedNetwork } from '../src/runtime.ts';
import { readSafetensors } from '../src/safetensors.ts';
import { tensor4, type Tensor4 } from '../src/tensor.ts';
import { runTiled } from '../src/tiling.ts';
import { conformanceCase, factorOf, seededData, weightsPath } from '../test/support/conformance.ts';
import { PythonWorker } from './python-worker.ts';
import type { BenchGroup, BenchResult } from './types.ts';

const TORCH_SCRIPT = fileURLToPath(new URL('./torch_networks.py', import.meta.url));

/**
 * Full-size layouts: the interposer as shipped (64 channels, 12 blocks), the x2 upscaler (depth 16)
 * and the SD1/SDXL TAESD decoder, whose decodes take seconds, hence fewer runs.
 */
const NETWORKS = { interposer: 'interposer-xl-to-v1', upscaler: 'upscaler-x2.0', taesd: 'taesd-decoder-4ch' } as const;
interface Case {
  readonly name: string;
  readonly network: keyof typeof NETWORKS;
  readonly side: number;
  readonly runs: number;
  readonly warmup: number;
  readonly maxRatio: number;
}
const LATENT_NETWORK = { runs: 7, warmup: 2, maxRatio: 0.6 };
const DECODER = { runs: 3, warmup: 1, maxRatio: 0.9 };
const CASES: Case[] = [
  { name: 'interposer 64x64', network: 'interposer', side: 64, ...LATENT_NETWORK },
  { name: 'interposer 128x128', network: 'interposer', side: 128, ...LATENT_NETWORK },
  { name: 'upscaler x2 64x64 -> 128x128', network: 'upscaler', side: 64, ...LATENT_NETWORK },
  { name: 'upscaler x2 128x128 -> 256x256', network: 'upscaler', side: 128, ...LATENT_NETWORK },
  { name: 'TAESD decode 64x64 -> 512x512', network: 'taesd', side: 64, ...DECODER },
  { name: 'TAESD decode 128x128 -> 1024x1024', network: 'taesd', side: 128, ...DECODER },
];

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** The tiles the `net` command runs. */
async function timeOurs(network: LoadedNetwork, input: Tensor4, c: Case): Promise<{ ms: number; checksum: number }> {
  const run = () => runTiled((tile) => network.run(tile), network.graph, input);
  for (let i = 0; i < c.warmup; i++) await run();
  const times: number[] = [];
  let out: Tensor4 | undefined;
  for (let i = 0; i < c.runs; i++) {
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
export const networksBench: BenchGroup = async ({ rounds, wanted }) => {
  const cases = CASES.filter((c) => wanted(c.name));
  const threads = 2;
  const runtime = await Runtime.create({ device: 'cpu', threads });
  const torch = new PythonWorker(TORCH_SCRIPT, [String(threads)]);
  try {
    const loaded = new Map<string, LoadedNetwork>();
    for (const key of new Set(cases.map((c) => c.network))) {
      const name = NETWORKS[key];
      const c = conformanceCase(name);
      loaded.set(key, await runtime.load(buildNetwork(c.kind, await readSafetensors(weightsPath(c)), factorOf(c), c.weights)));
      await torch.request({ op: 'load', name: key, kind: c.kind, config: c.config, weights: weightsPath(c) });
    }
    const ours = new Map<string, number[]>();
    const theirs = new Map<string, number[]>();
    for (let round = 0; round < rounds; round++) {
      for (const c of cases) {
        const shape = [1, 4, c.side, c.side];
        const input = tensor4(shape, seededData(4 * c.side * c.side, round + 1));
        const mine = await timeOurs(loaded.get(c.network) as LoadedNetwork, input, c);
        const hex = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength).toString('hex');
        const baseline = await torch.request<{ ms: number; checksum: number }>({ op: 'time', name: c.network, shape, input: hex, runs: c.runs, warmup: c.warmup });
        if (Math.abs(mine.checksum - baseline.checksum) > 1e-3 * Math.max(1, Math.abs(baseline.checksum))) {
          throw new Error(`${c.name}: our output (sum ${mine.checksum}) differs from PyTorch's (sum ${baseline.checksum})`);
        }
        ours.set(c.name, [...(ours.get(c.name) ?? []), mine.ms]);
        theirs.set(c.name, [...(theirs.get(c.name) ?? []), baseline.ms]);
      }
    }
    return cases.map((c): BenchResult => {
      const ms = median(ours.get(c.name) as number[]);
      const baselineMs = median(theirs.get(c.name) as number[]);
      const ratio = ms / baselineMs;
      return { name: `${c.name} (onnxruntime cpu vs PyTorch eager)`, ms, baseline_ms: baselineMs, ratio, target: `ratio <= ${c.maxRatio}`, ok: ratio <= c.maxRatio };
    });
  } finally {
    torch.close();
  }
};
