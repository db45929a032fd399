import { parseArgs, type ParseArgsConfig } from 'node:util';
import { consoleLog, type ConsoleLog } from '../console-log.ts';
import { BridgeError } from '../errors.ts';
import { Engine } from '../engine.ts';
import { DEFAULT_WORK_LIMITS, type WorkLimits } from '../limits.ts';
import { describePlan, describeStep, type Job } from '../planner.ts';
import { Runtime, isDeviceChoice, DEVICE_CHOICES } from '../runtime.ts';
import { envFlag, storeOptionsFromEnv } from '../store/store-options.ts';
import { ModelStore } from '../store/store.ts';

/** The work limits as flags; the server takes the same ones, and both read `LATENT_BRIDGE_<FLAG>` too. */
export const WORK_LIMIT_OPTIONS = {
  'max-side': { type: 'string' },
  'max-elements': { type: 'string' },
  'max-scale': { type: 'string' },
  'allow-nonfinite': { type: 'boolean' },
} as const satisfies ParseArgsConfig['options'];

export const WORK_LIMIT_USAGE = `  --max-side N        largest requested height or width, latent pixels (default ${DEFAULT_WORK_LIMITS.maxSide})
  --max-elements N    largest tensor, in elements, received or produced (default ${DEFAULT_WORK_LIMITS.maxElements})
  --max-scale F       largest upscale --scale (default ${DEFAULT_WORK_LIMITS.maxScale})
  --allow-nonfinite   process latents holding NaN or infinity instead of refusing them`;

/** Options shared by every command that runs networks through the model store. */
export const ENGINE_OPTIONS = {
  models: { type: 'string', multiple: true },
  offline: { type: 'boolean' },
  comfyui: { type: 'string' },
  device: { type: 'string' },
  tensor: { type: 'string' },
  ...WORK_LIMIT_OPTIONS,
} as const satisfies ParseArgsConfig['options'];

export const ENGINE_USAGE = `  --models DIR        also look for weight files in DIR (repeatable; LATENT_BRIDGE_MODELS too)
  --offline           never download (HF_HUB_OFFLINE=1 does the same)
  --comfyui DIR       also use the weight files of the ComfyUI install in DIR (LATENT_BRIDGE_COMFYUI too)
  --device D          ${DEVICE_CHOICES.join('|')} (default auto: the first GPU provider that works here, else CPU; LATENT_BRIDGE_DEVICE)
  --tensor NAME       the input tensor to read (default: the file's only tensor)
${WORK_LIMIT_USAGE}`;

type Env = Readonly<Record<string, string | undefined>>;

/** `LATENT_BRIDGE_MAX_SIDE` for `max-side`. */
export function envName(flag: string): string {
  return `LATENT_BRIDGE_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** A flag's value, else its environment variable's, else undefined. */
export function setting(values: Readonly<Record<string, unknown>>, flag: string, env: Env = process.env): string | undefined {
  const value = values[flag];
  if (typeof value === 'string') return value;
  const fromEnv = env[envName(flag)];
  return fromEnv !== undefined && fromEnv.trim() !== '' ? fromEnv.trim() : undefined;
}

/** A command-line integer of at least `min`, e.g. `--port 0` or `--max-side 2048`. */
export function integerOption(flag: string, text: string, min: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isSafeInteger(value) || value < min) throw new BridgeError('bad_request', `--${flag} must be an integer >= ${min}, got "${text}"`);
  return value;
}

/** A command-line number that must be positive and finite, e.g. `--factor` or `--scale`. */
export function positiveNumber(option: string, text: string | undefined): number {
  const value = Number(text);
  if (text === undefined || !(value > 0) || !Number.isFinite(value)) {
    throw new BridgeError('bad_request', `${option} must be a positive number, got ${text === undefined ? 'nothing' : `"${text}"`}`);
  }
  return value;
}

/** The work limits from flags and environment, on top of the defaults the server also starts from. */
export function readWorkLimits(values: Readonly<Record<string, unknown>>, env: Env = process.env): WorkLimits {
  const side = setting(values, 'max-side', env);
  const elements = setting(values, 'max-elements', env);
  const scale = setting(values, 'max-scale', env);
  return {
    maxSide: side === undefined ? DEFAULT_WORK_LIMITS.maxSide : integerOption('max-side', side, 1),
    maxElements: elements === undefined ? DEFAULT_WORK_LIMITS.maxElements : integerOption('max-elements', elements, 1),
    maxScale: scale === undefined ? DEFAULT_WORK_LIMITS.maxScale : positiveNumber('--max-scale', scale),
    checkFinite: !(values['allow-nonfinite'] === true || envFlag(env[envName('allow-nonfinite')])),
  };
}

/** `--device` or `LATENT_BRIDGE_DEVICE`, checked; `auto` when neither is given. */
export function readDevice(values: Readonly<Record<string, unknown>>, env: Env = process.env) {
  const choice = setting(values, 'device', env) ?? 'auto';
  if (!isDeviceChoice(choice)) throw new BridgeError('bad_request', `--device must be one of ${DEVICE_CHOICES.join(', ')}, got "${choice}"`);
  return choice;
}

/** The options that say where the model store looks. */
export interface StoreValues {
  models?: string[];
  offline?: boolean;
  comfyui?: string;
}

/**
 * The model store as every command builds it: `--models` folders, `--offline`, `--comfyui`, then
 * the environment. It says on stderr when a download starts, ends, fails or is cancelled.
 */
export function createModelStore(values: StoreValues, log: ConsoleLog = consoleLog('normal')): ModelStore {
  return new ModelStore({
    ...storeOptionsFromEnv({ modelDirs: values.models, offline: values.offline, comfyUiDir: values.comfyui }),
    logger: (line) => log.info(line),
  });
}

export async function createRuntime(values: Readonly<Record<string, unknown>>): Promise<Runtime> {
  return Runtime.create({ device: readDevice(values) });
}

/**
 * Runs a job within the limits (the same decision the server makes), saying on stderr what each
 * step does, so a long job is never silent.
 */
export async function runJob(job: Job, values: StoreValues & Record<string, unknown>, limits: WorkLimits) {
  const log = consoleLog('normal');
  const engine = new Engine({ source: createModelStore(values, log), runtime: await createRuntime(values), log });
  try {
    const { plan, latent } = await engine.perform(job, limits, (step) => console.error(`running ${describeStep(step)}`));
    return { plan, latent, device: engine.device, summary: describePlan(plan) };
  } finally {
    await engine.close();
  }
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
