import { BridgeError } from '../errors.ts';
import { FAMILIES, getFamily, type FamilyName } from '../families.ts';
import { makeLatent, type Latent } from '../latent.ts';
import { scaledSize } from '../planner.ts';
import type { RgbImage } from '../preview.ts';
import type { FloatDtype } from '../tensor.ts';
import {
  fail,
  isWireMap,
  readInteger,
  readOptionalBoolean,
  readOptionalInteger,
  readOptionalNumber,
  readOptionalString,
  readSize,
  readString,
  type WireMap,
} from './fields.ts';
import { readTensor, type TensorLimits, type WireTensor } from './wire-tensor.ts';

/** Bumped only for changes an existing client would misread. */
export const PROTOCOL_VERSION = 1;

export const OPS = ['hello', 'models', 'upscale', 'interpose', 'hires', 'preview', 'watch'] as const;
export type OpName = (typeof OPS)[number];

export type RequestId = number | string;

export interface Size {
  readonly height: number;
  readonly width: number;
}

/** A latent from the wire, in webui model space, with the dtype the reply must use. */
export interface WireLatent {
  readonly latent: Latent;
  readonly dtype: FloatDtype;
}

export type Request =
  | { readonly id: RequestId; readonly op: 'hello'; readonly protocol: number; readonly client?: string }
  | { readonly id: RequestId; readonly op: 'models' }
  | { readonly id: RequestId; readonly op: 'upscale'; readonly input: WireLatent; readonly target: Size }
  | { readonly id: RequestId; readonly op: 'interpose'; readonly input: WireLatent; readonly to: FamilyName }
  | { readonly id: RequestId; readonly op: 'hires'; readonly input: WireLatent; readonly to: FamilyName; readonly target: Size }
  | { readonly id: RequestId; readonly op: 'preview'; readonly input: WireLatent; readonly preview: PreviewRequest }
  | { readonly id: RequestId; readonly op: 'watch' };

export interface PreviewRequest {
  readonly job?: string;
  readonly step?: number;
  readonly total?: number;
  readonly index: number;
  readonly grid: boolean;
  readonly noreply: boolean;
  /** False: draw and answer only, never show it to viewers (for a client's own preview display). */
  readonly publish: boolean;
}

export interface RequestLimits extends TensorLimits {
  /** Largest height or width, in latent pixels, that a client may ask for. */
  readonly maxSide: number;
}

export type ReplyBody =
  | { readonly protocol: number; readonly server: string; readonly version: string; readonly device: string; readonly families: readonly string[]; readonly ops: readonly string[]; readonly limits: object }
  | { readonly models: readonly object[] }
  | { readonly latent: WireTensor; readonly plan?: readonly string[]; readonly warnings?: readonly string[] }
  | { readonly image: RgbImage }
  | { readonly superseded: true }
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

function readLatent(map: WireMap, family: FamilyName, limits: RequestLimits): WireLatent {
  const tensor = readTensor(map, 'latent', limits);
  return { latent: makeLatent(family, 'model', tensor.shape, tensor.data), dtype: tensor.dtype };
}

function checkOutputSize(input: WireLatent, to: FamilyName, target: Size, limits: RequestLimits): void {
  const elements = input.latent.shape[0] * FAMILIES[to].channels * target.height * target.width;
  if (elements > limits.maxElements) {
    throw new BridgeError(
      'too_large',
      `the result would hold ${elements} elements, more than this server's limit of ${limits.maxElements} (--max-elements)`,
    );
  }
}

function readUpscaleTarget(map: WireMap, input: WireLatent, limits: RequestLimits): Size {
  const hasSize = map.size !== undefined && map.size !== null;
  const hasScale = map.scale !== undefined && map.scale !== null;
  if (hasSize === hasScale) throw new BridgeError('bad_request', 'upscale takes exactly one of "size" ([height, width] in latent pixels) or "scale"');
  if (hasSize) return readSize(map, 'size', limits.maxSide);
  const scale = readOptionalNumber(map, 'scale', 0, 16) as number;
  const [, , height, width] = input.latent.shape;
  // Rounded down, as the webui does for its hires size.
  const target = scaledSize({ height, width }, scale);
  if (target.height < 1 || target.width < 1) {
    throw new BridgeError('bad_request', `scale ${scale} shrinks ${height}x${width} latent pixels to nothing`);
  }
  if (target.height > limits.maxSide || target.width > limits.maxSide) {
    throw new BridgeError('too_large', `scale ${scale} gives ${target.height}x${target.width} latent pixels, beyond this server's limit of ${limits.maxSide} per side`);
  }
  return target;
}

function readPreview(map: WireMap, batch: number): PreviewRequest {
  const job = readOptionalString(map, 'job', 128);
  const step = readOptionalInteger(map, 'step', 0, 1_000_000);
  const total = readOptionalInteger(map, 'total', 1, 1_000_000);
  const index = readOptionalInteger(map, 'index', 0, batch - 1) ?? 0;
  const grid = readOptionalBoolean(map, 'grid') ?? false;
  const noreply = readOptionalBoolean(map, 'noreply') ?? false;
  const publish = readOptionalBoolean(map, 'publish') ?? true;
  if (noreply && !publish) throw new BridgeError('bad_request', 'a preview with noreply: true and publish: false would reach nobody');
  return { job, step, total, index, grid, noreply, publish };
}

/**
 * Validates one decoded message into a typed request. Every field the server uses is
 * checked here; unknown fields are ignored so that newer clients keep working.
 */
export function parseRequest(message: unknown, limits: RequestLimits): Request {
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
    case 'upscale': {
      const input = readLatent(message, readFamily(message, 'family'), limits);
      const target = readUpscaleTarget(message, input, limits);
      checkOutputSize(input, input.latent.family, target, limits);
      return { id, op: 'upscale', input, target };
    }
    case 'interpose': {
      const input = readLatent(message, readFamily(message, 'from'), limits);
      const to = readFamily(message, 'to');
      const [, , h, w] = input.latent.shape;
      checkOutputSize(input, to, { height: h, width: w }, limits);
      return { id, op: 'interpose', input, to };
    }
    case 'hires': {
      const input = readLatent(message, readFamily(message, 'from'), limits);
      const to = readFamily(message, 'to');
      const target = readSize(message, 'size', limits.maxSide);
      checkOutputSize(input, to, target, limits);
      return { id, op: 'hires', input, to, target };
    }
    case 'preview': {
      const input = readLatent(message, readFamily(message, 'family'), limits);
      return { id, op: 'preview', input, preview: readPreview(message, input.latent.shape[0]) };
    }
  }
}
