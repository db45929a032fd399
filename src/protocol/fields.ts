import { BridgeError } from '../errors.ts';
import { isPlainObject } from '../plain-object.ts';

/**
 * Readers for the fields of a decoded message. Each one checks the type and range and names
 * the field in its `bad_request` error, so a client author sees exactly what was wrong.
 */
export type WireMap = Readonly<Record<string, unknown>>;

export function isWireMap(value: unknown): value is WireMap {
  return isPlainObject(value);
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Uint8Array) return 'binary data';
  if (typeof value === 'string') return `the string ${JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)}`;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') return `${typeof value} ${String(value)}`;
  return typeof value === 'object' ? 'a map' : typeof value;
}

export function fail(field: string, expected: string, value: unknown): never {
  throw new BridgeError('bad_request', `field "${field}" must be ${expected}, got ${describe(value)}`);
}

export function readString(map: WireMap, field: string, maxLength = 256): string {
  const value = map[field];
  if (typeof value !== 'string' || value.length === 0 || value.length > maxLength) {
    fail(field, `a non-empty string of at most ${maxLength} characters`, value);
  }
  return value;
}

export function readOptionalString(map: WireMap, field: string, maxLength = 256): string | undefined {
  return map[field] === undefined || map[field] === null ? undefined : readString(map, field, maxLength);
}

export function readInteger(map: WireMap, field: string, min: number, max: number): number {
  const value = map[field];
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(field, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

export function readOptionalInteger(map: WireMap, field: string, min: number, max: number): number | undefined {
  return map[field] === undefined || map[field] === null ? undefined : readInteger(map, field, min, max);
}

/** A finite number; its range is for the caller to judge (src/limits.ts). */
export function readOptionalNumber(map: WireMap, field: string): number | undefined {
  const value = map[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) fail(field, 'a finite number', value);
  return value;
}

export function readOptionalBoolean(map: WireMap, field: string): boolean | undefined {
  const value = map[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'boolean') fail(field, 'true or false', value);
  return value;
}

/** A `[height, width]` pair of latent pixels; how large it may be is for the caller to judge (src/limits.ts). */
export function readSize(map: WireMap, field: string): { height: number; width: number } {
  const value = map[field];
  if (!Array.isArray(value) || value.length !== 2 || !value.every((d) => typeof d === 'number' && Number.isSafeInteger(d) && d >= 1)) {
    fail(field, '[height, width] in latent pixels, two positive integers', value);
  }
  return { height: value[0] as number, width: value[1] as number };
}

/** One of `choices`, or undefined when the field is absent. */
export function readOptionalChoice<T extends string>(map: WireMap, field: string, choices: readonly T[]): T | undefined {
  const value = map[field];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string' || !(choices as readonly string[]).includes(value)) fail(field, `one of ${choices.map((c) => JSON.stringify(c)).join(', ')}`, value);
  return value as T;
}

/**
 * A nested map, or undefined when the field is absent. Its keys come back as `field.key`, so
 * the readers above name a nested field the way the docs do (`meta.prompt`).
 */
export function readOptionalMap(map: WireMap, field: string): WireMap | undefined {
  const value = map[field];
  if (value === undefined || value === null) return undefined;
  if (!isWireMap(value)) fail(field, 'a map', value);
  return Object.fromEntries(Object.entries(value).map(([key, inner]) => [`${field}.${key}`, inner]));
}
