import { BridgeError } from '../errors.ts';

/** How much structure one frame may hold; checked on the raw bytes before anything is decoded. */
export interface FrameBounds {
  /** Values in one frame: every scalar, string, bin, map key, map value, map and array counts one. */
  readonly maxFrameItems: number;
  /** Maps and arrays nested in each other; the request map itself is level 1. */
  readonly maxFrameDepth: number;
  /** Bytes of all the strings in one frame together, map keys included. */
  readonly maxFrameStringBytes: number;
}

/** A request needs a few dozen values, 3 levels and a few hundred string bytes; these leave room for newer clients. */
export const DEFAULT_FRAME_BOUNDS: FrameBounds = {
  maxFrameItems: 4096,
  maxFrameDepth: 16,
  maxFrameStringBytes: 1024 * 1024,
};

function notMsgpack(why: string): BridgeError {
  return new BridgeError('bad_request', `the frame is not valid msgpack: ${why}`);
}

/**
 * Walks the msgpack bytes of one frame without building anything, and throws as soon as they
 * hold more than `bounds` allows (`too_large`), end inside a value, carry bytes after the
 * message, have a map key that is not a string, or use an extension type, which the protocol
 * has none of (`bad_request`).
 *
 * Decoding cost grows with the number of values and string bytes, not with the frame's size:
 * a frame of millions of empty maps costs seconds and gigabytes to decode, a frame of a few
 * fields around a large bin costs nothing. So this walk stops after at most `maxFrameItems`
 * steps, skips over bin and string bodies, and only a frame it accepts is decoded.
 */
export function checkFrameStructure(frame: Uint8Array, bounds: FrameBounds): void {
  const end = frame.length;
  // Values still to read in each open map or array, innermost last, and whether it is a map.
  const open: number[] = [];
  const isMap: boolean[] = [];
  let pos = 0;
  let items = 0;
  let stringBytes = 0;

  const tooManyItems = (): BridgeError =>
    new BridgeError('too_large', `the frame holds more than ${bounds.maxFrameItems} values (keys, values and array items; limit --max-frame-items)`);
  const header = (size: number): void => {
    if (pos + size > end) throw notMsgpack('it ends inside a value');
  };
  const uint = (at: number, size: 1 | 2 | 4): number => {
    header(at - pos + size);
    if (size === 1) return frame[at];
    if (size === 2) return (frame[at] << 8) | frame[at + 1];
    return frame[at] * 0x1000000 + ((frame[at + 1] << 16) | (frame[at + 2] << 8) | frame[at + 3]);
  };
  const string = (length: number, headerSize: number): void => {
    stringBytes += length;
    if (stringBytes > bounds.maxFrameStringBytes) {
      throw new BridgeError('too_large', `the frame's strings add up to more than ${bounds.maxFrameStringBytes} bytes (limit --max-frame-strings-kb)`);
    }
    pos += headerSize + length;
  };
  const container = (children: number, headerSize: number, map: boolean): void => {
    if (open.length + 1 > bounds.maxFrameDepth) {
      throw new BridgeError('too_large', `the frame nests maps and arrays more than ${bounds.maxFrameDepth} levels deep (limit --max-frame-depth)`);
    }
    if (children > bounds.maxFrameItems - items) throw tooManyItems();
    pos += headerSize;
    if (children > 0) {
      open.push(children);
      isMap.push(map);
    }
  };

  for (;;) {
    if (pos >= end) throw notMsgpack('it ends inside a value');
    if (++items > bounds.maxFrameItems) throw tooManyItems();
    const opened = open.length;
    const byte = frame[pos];
    // A map's keys come at its even counts: 2n values left means a key is next.
    if (opened > 0 && isMap[opened - 1] && open[opened - 1] % 2 === 0 && !((byte >= 0xa0 && byte <= 0xbf) || (byte >= 0xd9 && byte <= 0xdb))) {
      throw new BridgeError('bad_request', `map keys must be strings; the key at offset ${pos} is not`);
    }
    if (byte <= 0x7f || byte >= 0xe0 || byte === 0xc0 || byte === 0xc2 || byte === 0xc3) pos += 1;
    else if (byte <= 0x8f) container((byte & 0x0f) * 2, 1, true);
    else if (byte <= 0x9f) container(byte & 0x0f, 1, false);
    else if (byte <= 0xbf) string(byte & 0x1f, 1);
    else {
      switch (byte) {
        case 0xc4: pos += 2 + uint(pos + 1, 1); break;
        case 0xc5: pos += 3 + uint(pos + 1, 2); break;
        case 0xc6: pos += 5 + uint(pos + 1, 4); break;
        case 0xcc: case 0xd0: pos += 2; break;
        case 0xcd: case 0xd1: pos += 3; break;
        case 0xca: case 0xce: case 0xd2: pos += 5; break;
        case 0xcb: case 0xcf: case 0xd3: pos += 9; break;
        case 0xd9: string(uint(pos + 1, 1), 2); break;
        case 0xda: string(uint(pos + 1, 2), 3); break;
        case 0xdb: string(uint(pos + 1, 4), 5); break;
        case 0xdc: container(uint(pos + 1, 2), 3, false); break;
        case 0xdd: container(uint(pos + 1, 4), 5, false); break;
        case 0xde: container(uint(pos + 1, 2) * 2, 3, true); break;
        case 0xdf: container(uint(pos + 1, 4) * 2, 5, true); break;
        case 0xc1: throw notMsgpack(`byte 0xc1 at offset ${pos} is never used in msgpack`);
        default: throw new BridgeError('bad_request', `the frame uses msgpack extension type 0x${byte.toString(16)} at offset ${pos}; the protocol has no extension types`);
      }
    }
    if (pos > end) throw notMsgpack('it ends inside a value');
    if (open.length > opened) continue;
    // A value is complete: count it off its map or array, and those that it completes in turn.
    while (open.length > 0 && --open[open.length - 1] === 0) {
      open.pop();
      isMap.pop();
    }
    if (open.length === 0) break;
  }
  if (pos !== end) throw notMsgpack(`${end - pos} byte${end - pos === 1 ? '' : 's'} follow the message`);
}
