import { copyFileSync, mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findModelSpec } from '../../src/store/registry.ts';
import { CONFORMANCE_DIR } from './conformance.ts';

/**
 * Which conformance weights stand in for which real model. They have the original layouts
 * (some reduced in width and depth) and the right factors, so every code path runs for real.
 */
export const STAND_INS: Readonly<Record<string, string>> = {
  'upscaler-v1-x2.0': 'upscaler-x2.0',
  'upscaler-v1-x1.5': 'upscaler-x1.5',
  'upscaler-v1-x1.25': 'upscaler-x1.25-small',
  'upscaler-xl-x2.0': 'upscaler-x2.0',
  'upscaler-xl-x1.5': 'upscaler-x1.5',
  'upscaler-xl-x1.25': 'upscaler-x1.25-small',
  'interposer-xl-to-v1': 'interposer-xl-to-v1',
  'interposer-v1-to-v3': 'interposer-v1-to-v3-small',
  'interposer-fx-to-xl': 'interposer-fx-to-xl-small',
  'interposer-ca-to-v1': 'interposer-ca-to-v1-small',
  'taesd-decoder-v1': 'taesd/taesd-decoder-4ch',
  'taesd-decoder-xl': 'taesd/taesd-decoder-4ch',
  'taesd-decoder-v3': 'taesd/taesd-decoder-16ch',
  'taesd-decoder-fx': 'taesd/taesd-decoder-16ch',
};

/** A fresh folder holding stand-in weight files under the registry's file names. */
export function makeModelsDir(models: readonly string[] = Object.keys(STAND_INS)): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'latent-bridge-models-'));
  for (const name of models) {
    const spec = findModelSpec(name);
    if (spec === undefined) throw new Error(`unknown model ${name}`);
    copyFileSync(path.join(CONFORMANCE_DIR, `${STAND_INS[name]}.weights.safetensors`), path.join(dir, spec.fileName));
  }
  return dir;
}
