/**
 * The msgpack frames that cost a decoder the most per byte, each as large as `size` allows:
 * millions of tiny values, deep nesting, strings to decode, keys to intern. None of them is a
 * valid request; the server must refuse each one without decoding it.
 */
export function frameBombs(size: number): Record<string, Uint8Array> {
  /** An array32 header followed by as many copies of `item` as fit. */
  const arrayOf = (item: readonly number[]): Uint8Array => {
    const count = Math.floor((size - 5) / item.length);
    const frame = new Uint8Array(5 + count * item.length);
    frame[0] = 0xdd;
    new DataView(frame.buffer).setUint32(1, count);
    for (let i = 0; i < count; i++) frame.set(item, 5 + i * item.length);
    return frame;
  };
  /** `opening` repeated as deep as fits, closed by a nil. */
  const nested = (opening: readonly number[]): Uint8Array => {
    const levels = Math.floor((size - 1) / opening.length);
    const frame = new Uint8Array(levels * opening.length + 1);
    for (let i = 0; i < levels; i++) frame.set(opening, i * opening.length);
    frame[frame.length - 1] = 0xc0;
    return frame;
  };
  const longString = new Uint8Array(size).fill(0x61);
  longString[0] = 0xdb;
  new DataView(longString.buffer).setUint32(1, size - 5);
  // A map32 of distinct 7-character keys (fixstr) with nil values.
  const keys = Math.floor((size - 5) / 9);
  const manyKeys = new Uint8Array(5 + keys * 9);
  manyKeys[0] = 0xdf;
  new DataView(manyKeys.buffer).setUint32(1, keys);
  for (let i = 0; i < keys; i++) {
    manyKeys[5 + i * 9] = 0xa7;
    manyKeys.set(new TextEncoder().encode(i.toString(36).padStart(7, '0')), 6 + i * 9);
    manyKeys[5 + i * 9 + 8] = 0xc0;
  }
  return {
    'empty maps': arrayOf([0x80]),
    'empty arrays': arrayOf([0x90]),
    nils: arrayOf([0xc0]),
    'one-character strings': arrayOf([0xa1, 0x61]),
    'one-byte bins': arrayOf([0xc4, 0x01, 0x00]),
    doubles: arrayOf([0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
    'nested arrays': nested([0x91]),
    'nested maps': nested([0x81, 0xa1, 0x61]),
    'distinct keys': manyKeys,
    'one long string': longString,
  };
}
