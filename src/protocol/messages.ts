import { BridgeError } from '../errors.ts';
import { getFamily, type FamilyName } from '../families.ts';
import { makeLatent, type Latent } from '../latent.ts';
import { scaledTarget, type WorkLimits } from '../limits.ts';
import type { Job } from '../planner.ts';
import type { RgbImage } from '../preview.ts';
import type { FloatDtype, Size } from '../tensor.ts';
import {
  fail,
  isWireMap,
  readInteger,
  readOptionalBoolean,
  readOptionalInteger,
  readOptionalChoice,
  readOptionalMap,
  readOptionalNumber,
  readOptionalString,
  readSize,
  readString,
  type WireMap,
} from './fields.ts';
import type { WirePlan } from './wire-plan.ts';
import { readTensor, type WireTensor } from './wire-tensor.ts';

/** Bumped only for changes an existing client would misread. */
export const PROTOCOL_VERSION = 2;

export const OPS = ['hello', 'models', 'upscale', 'interpose', 'hires', 'preview', 'end', 'watch'] as const;
export type OpName = (typeof OPS)[number];

export type RequestId = number | string;

/** A latent from the wire, in webui model space, with the dtype the reply must use. */
export interface WireLatent {
  readonly latent: Latent;
  readonly dtype: FloatDtype;
}

/** An upscale, interpose or hires request: the job, and the dtype its result travels back in. */
export interface InferenceRequest {
  readonly id: RequestId;
  readonly op: Job['op'];
  readonly job: Job;
  readonly dtype: FloatDtype;
}

export type Request =
  | { readonly id: RequestId; readonly op: 'hello'; readonly protocol: number; readonly client?: string }
  | { readonly id: RequestId; readonly op: 'models' }
  | InferenceRequest
  | { readonly id: RequestId; readonly op: 'preview'; readonly input: WireLatent; readonly preview: PreviewRequest }
  | { readonly id: RequestId; readonly op: 'end'; readonly end: JobEnd }
  | { readonly id: RequestId; readonly op: 'watch' };

export const JOB_PASSES = ['first', 'hires'] as const;
export type JobPass = (typeof JOB_PASSES)[number];

/** What a client tells viewers about the generation a preview job shows; every field optional. */
export interface PreviewMeta {
  readonly prompt?: string;
  /** The checkpoint's name. */
  readonly model?: string;
  readonly seed?: number;
  readonly sampler?: string;
  /** Sampling steps the user asked for (the job's `total` may differ, e.g. a hires pass at low denoise). */
  readonly steps?: number;
  /** Which pass of a generation with hires fix the job is. */
  readonly pass?: JobPass;
}

export const JOB_OUTCOMES = ['finished', 'interrupted', 'failed'] as const;
export type JobOutcome = (typeof JOB_OUTCOMES)[number];

/** A client saying that a preview job is over, and how. */
export interface JobEnd {
  readonly job?: string;
  readonly outcome: JobOutcome;
  /** What went wrong, for `failed`. */
  readonly error?: string;
  readonly noreply: boolean;
}

export interface PreviewRequest {
  readonly job?: string;
  readonly step?: number;
  readonly total?: number;
  readonly index: number;
  readonly grid: boolean;
  readonly noreply: boolean;
  /** False: draw and answer only, never show it to viewers (for a client's own preview display). */
  readonly publish: boolean;
  readonly meta?: PreviewMeta;
  /** True: also push this job's TAESD pictures to this connection as `taesd` events (to viewers too when published). */
  readonly taesd: boolean;
}

/** Families as the `hello` reply describes them, so clients need no table of their own. */
export interface WireFamily {
  readonly name: FamilyName;
  readonly label: string;
  readonly channels: number;
  /** Image pixels per latent pixel along each axis. */
  readonly downscale: number;
}

export type ReplyBody =
  | { readonly protocol: number; readonly server: string; readonly version: string; readonly device: string; readonly families: readonly WireFamily[]; readonly ops: readonly string[]; readonly limits: object }
  | { readonly models: readonly object[] }
  | { readonly latent: WireTensor; readonly plan: WirePlan }
  | { readonly image: RgbImage }
  | { readonly superseded: true }
  | { readonly ended: boolean }
  | { readonly jobs: readonly object[] };

/** The id to echo in an error reply: whatever valid id the frame carried, else nil. */
export function peekRequestId(message: unknown): RequestId | null {
  if (!isWireMap(message)) return null;
  const id = message.id;
  if (typeof id === 'number' && Number.isSafeInteger(id)) return id;
  if (typeof id === 'string' && id.length <= 256) return id;
  return null;
}

function readFamily(map: WireMap, field: string): FamilyName {
  return getFamily(readString(map, field, 32)).name;
}

function readLatent(map: WireMap, family: FamilyName, limits: WorkLimits): WireLatent {
  const tensor = readTensor(map, 'latent', limits);
  return { latent: makeLatent(family, 'model', tensor.shape, tensor.data), dtype: tensor.dtype };
}

function readUpscaleTarget(map: WireMap, latent: Latent, limits: WorkLimits): Size {
  const hasSize = map.size !== undefined && map.size !== null;
  const hasScale = map.scale !== undefined && map.scale !== null;
  if (hasSize === hasScale) throw new BridgeError('bad_request', 'upscale takes exactly one of "size" ([height, width] in latent pixels) or "scale"');
  if (hasSize) return readSize(map, 'size');
  const [, , height, width] = latent.shape;
  return scaledTarget({ height, width }, readOptionalNumber(map, 'scale') as number, limits);
}

/** Longest strings of a preview's `meta` and an `end`, in UTF-16 code units. */
export const META_BOUNDS = { prompt: 4096, model: 256, sampler: 64, error: 256 } as const;
const JOB_NAME_CHARS = 128;

function readPreviewMeta(map: WireMap): PreviewMeta | undefined {
  const meta = readOptionalMap(map, 'meta');
  if (meta === undefined) return undefined;
  const fields: PreviewMeta = {
    prompt: readOptionalString(meta, 'meta.prompt', META_BOUNDS.prompt),
    model: readOptionalString(meta, 'meta.model', META_BOUNDS.model),
    seed: readOptionalInteger(meta, 'meta.seed', 0, Number.MAX_SAFE_INTEGER),
    sampler: readOptionalString(meta, 'meta.sampler', META_BOUNDS.sampler),
    steps: readOptionalInteger(meta, 'meta.steps', 1, 1_000_000),
    pass: readOptionalChoice(meta, 'meta.pass', JOB_PASSES),
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

function readJobEnd(map: WireMap): JobEnd {
  const outcome = readOptionalChoice(map, 'outcome', JOB_OUTCOMES);
  if (outcome === undefined) fail('outcome', `one of ${JOB_OUTCOMES.join(', ')}`, map.outcome);
  return {
    job: readOptionalString(map, 'job', JOB_NAME_CHARS),
    outcome,
    error: readOptionalString(map, 'error', META_BOUNDS.error),
    noreply: readOptionalBoolean(map, 'noreply') ?? false,
  };
}

function readPreview(map: WireMap, batch: number): PreviewRequest {
  const job = readOptionalString(map, 'job', JOB_NAME_CHARS);
  const step = readOptionalInteger(map, 'step', 0, 1_000_000);
  const total = readOptionalInteger(map, 'total', 1, 1_000_000);
  const index = readOptionalInteger(map, 'index', 0, batch - 1) ?? 0;
  const grid = readOptionalBoolean(map, 'grid') ?? false;
  const noreply = readOptionalBoolean(map, 'noreply') ?? false;
  const publish = readOptionalBoolean(map, 'publish') ?? true;
  const taesd = readOptionalBoolean(map, 'taesd') ?? false;
  if (noreply && !publish && !taesd) throw new BridgeError('bad_request', 'a preview with noreply: true, publish: false and no taesd would reach nobody');
  return { job, step, total, index, grid, noreply, publish, taesd, meta: readPreviewMeta(map) };
}

/**
 * Validates one decoded message into a typed request. Every field the server uses is checked
 * here, the tensor against the limits before its bytes are touched; whether an inference job is
 * accepted is then the planner's decision (planJob), the same for the CLI. Unknown fields are
 * ignored so that newer clients keep working.
 */
export function parseRequest(message: unknown, limits: WorkLimits): Request {
  if (!isWireMap(message)) throw new BridgeError('bad_request', 'a request must be a msgpack map {id, op, ...}');
  const id = peekRequestId(message);
  if (id === null) fail('id', 'an integer or a string of at most 256 characters', message.id);
  const op = message.op;
  if (typeof op !== 'string' || !(OPS as readonly string[]).includes(op)) fail('op', `one of ${OPS.join(', ')}`, op);
  switch (op as OpName) {
    case 'hello': {
      const protocol = readInteger(message, 'protocol', 0, 1_000_000);
      if (protocol !== PROTOCOL_VERSION) {
        throw new BridgeError('bad_request', `this server speaks protocol ${PROTOCOL_VERSION}, the client asked for ${protocol}`);
      }
      return { id, op: 'hello', protocol, client: readOptionalString(message, 'client', 256) };
    }
    case 'models':
      return { id, op: 'models' };
    case 'watch':
      return { id, op: 'watch' };
    case 'end':
      return { id, op: 'end', end: readJobEnd(message) };
    case 'upscale': {
      const { latent, dtype } = readLatent(message, readFamily(message, 'family'), limits);
      return { id, op: 'upscale', dtype, job: { op: 'upscale', latent, target: readUpscaleTarget(message, latent, limits) } };
    }
    case 'interpose': {
      const { latent, dtype } = readLatent(message, readFamily(message, 'from'), limits);
      return { id, op: 'interpose', dtype, job: { op: 'interpose', latent, to: readFamily(message, 'to') } };
    }
    case 'hires': {
      const { latent, dtype } = readLatent(message, readFamily(message, 'from'), limits);
      return { id, op: 'hires', dtype, job: { op: 'hires', latent, to: readFamily(message, 'to'), target: readSize(message, 'size') } };
    }
    case 'preview': {
      const input = readLatent(message, readFamily(message, 'family'), limits);
      return { id, op: 'preview', input, preview: readPreview(message, input.latent.shape[0]) };
    }
  }
}
