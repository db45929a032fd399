import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Architecture } from '../../src/networks/network-graph.ts';
import { readSafetensors, toFloat32 } from '../../src/safetensors.ts';
import { tensor4, type Tensor4 } from '../../src/tensor.ts';

/**
 * The numeric vectors from the original PyTorch networks. The repository keeps its own copy in
 * test/conformance (a clone has no ../shared); conformance-vectors.test.ts keeps it identical.
 */
export const CONFORMANCE_DIR = path.resolve(fileURLToPath(new URL('../conformance/', import.meta.url)));

export interface ConformanceCase {
  readonly name: string;
  readonly kind: Architecture;
  readonly config: {
    readonly scale?: number;
    readonly fac?: number;
    readonly ch_in?: number;
    readonly ch_out?: number;
    readonly ch_mid?: number;
    readonly blocks?: number;
    readonly depth?: number;
    readonly latent_channels?: number;
  };
  readonly weights: string;
  readonly io: string;
  readonly input_shape: number[];
  readonly output_shape: number[];
  /** The folder of the case's manifest, which its file names are relative to. */
  readonly dir: string;
}

function readManifest(dir: string): readonly ConformanceCase[] {
  const { cases } = JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as { cases: Omit<ConformanceCase, 'dir'>[] };
  return cases.map((c) => ({ ...c, dir }));
}

/** The interposer and upscaler cases (manifest.json). */
export const CONFORMANCE_CASES = readManifest(CONFORMANCE_DIR);
/** The TAESD decoder cases, kept in their own folder and manifest (taesd/manifest.json). */
export const TAESD_CASES = readManifest(path.join(CONFORMANCE_DIR, 'taesd'));

export function conformanceCase(name: string): ConformanceCase {
  const found = [...CONFORMANCE_CASES, ...TAESD_CASES].find((c) => c.name === name);
  if (found === undefined) throw new Error(`no conformance case ${name}`);
  return found;
}

/** The factor the original module was constructed with (not stored in the weights); the TAESD decoder takes none. */
export function factorOf(c: ConformanceCase): number | undefined {
  return c.kind === 'interposer' ? c.config.scale : c.kind === 'upscaler' ? c.config.fac : undefined;
}

export function weightsPath(c: ConformanceCase): string {
  return path.join(c.dir, c.weights);
}

export async function conformanceIO(c: ConformanceCase): Promise<{ input: Tensor4; output: Tensor4 }> {
  const io = await readSafetensors(path.join(c.dir, c.io));
  const read = (name: string) => {
    const stored = io.tensors.get(name);
    if (stored === undefined) throw new Error(`${c.io} lacks ${name}`);
    return tensor4(stored.shape, toFloat32(stored, name));
  };
  return { input: read('input'), output: read('output') };
}

/** The acceptance rule of the conformance README: |got - expected| <= 1e-4 + 1e-4 * |expected|. */
export function countOutOfTolerance(got: Float32Array, expected: Float32Array): number {
  let bad = 0;
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(got[i] - expected[i]) <= 1e-4 + 1e-4 * Math.abs(expected[i]))) bad++;
  }
  return bad;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

/** A deterministic pseudo-random latent (xorshift), so failures reproduce. */
export function seededData(length: number, seed = 1, amplitude = 1): Float32Array {
  let state = seed >>> 0 || 1;
  const out = new Float32Array(length);
  for (let i = 0; i < length; i++) {
    state ^= state << 13;
    state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5;
    state >>>= 0;
    out[i] = ((state / 0xffffffff) * 2 - 1) * amplitude;
  }
  return out;
}
