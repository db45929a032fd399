import { parseArgs, type ParseArgsConfig } from 'node:util';
import { BridgeError } from '../errors.ts';
import { Engine } from '../engine.ts';
import { Runtime, isDeviceChoice, DEVICE_CHOICES } from '../runtime.ts';
import { storeOptionsFromEnv } from '../store/store-options.ts';
import { ModelStore } from '../store/store.ts';

/** Options shared by every command that runs networks through the model store. */
export const ENGINE_OPTIONS = {
  models: { type: 'string', multiple: true },
  offline: { type: 'boolean' },
  device: { type: 'string' },
  tensor: { type: 'string' },
} as const satisfies ParseArgsConfig['options'];

export const ENGINE_USAGE = `  --models DIR        also look for weight files in DIR (repeatable; LATENT_BRIDGE_MODELS too)
  --offline           never download (HF_HUB_OFFLINE=1 does the same)
  --device D          ${DEVICE_CHOICES.join('|')} (default auto: CUDA when installed, else CPU; LATENT_BRIDGE_DEVICE)
  --tensor NAME       the input tensor to read (default: the file's only tensor)`;

export async function createRuntime(device: string | undefined): Promise<Runtime> {
  const choice = device ?? process.env.LATENT_BRIDGE_DEVICE ?? 'auto';
  if (!isDeviceChoice(choice)) throw new BridgeError('bad_request', `--device must be one of ${DEVICE_CHOICES.join(', ')}, got "${choice}"`);
  return Runtime.create({ device: choice });
}

export async function createEngine(values: { models?: string[]; offline?: boolean; device?: string }): Promise<Engine> {
  const store = new ModelStore(storeOptionsFromEnv({ modelDirs: values.models, offline: values.offline }));
  return new Engine({ source: store, runtime: await createRuntime(values.device) });
}

/** Parses a command's arguments: its own options plus the two positional files IN and OUT. */
export function parseFiles<T extends ParseArgsConfig['options']>(args: string[], options: T, usage: string) {
  const parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  if (parsed.positionals.length !== 2) {
    throw new BridgeError('bad_request', `expected an input and an output file, got ${parsed.positionals.length} file arguments\n\n${usage}`);
  }
  const [input, output] = parsed.positionals as [string, string];
  return { values: parsed.values, input, output };
}

/** A command-line number that must be positive and finite, e.g. `--factor` or `--scale`. */
export function positiveNumber(option: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !(value > 0) || !Number.isFinite(value)) {
    throw new BridgeError('bad_request', `${option} must be a positive number, got ${text === undefined ? 'nothing' : `"${text}"`}`);
  }
  return value;
}
