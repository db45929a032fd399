/**
 * Whether a parsed value (JSON, msgpack) is a map of named fields: an object that is not an
 * array, not binary data and not a date, the other things a parser may hand back as objects.
 */
export function isPlainObject(value: unknown): value is Readonly<Record<string, unknown>> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !ArrayBuffer.isView(value) && !(value instanceof Date);
}
