import { Packr, Unpackr } from 'msgpackr';
import { BridgeError } from '../errors.ts';
import { checkFrameStructure, DEFAULT_FRAME_BOUNDS, type FrameBounds } from './frame-structure.ts';

// Records (msgpackr's extension 0x72) are unreadable by other msgpack libraries, so they are
// off both ways. 64-bit integers decode as numbers; ids beyond 2^53 then fail validation.
const packr = new Packr({ useRecords: false });
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** Encodes one message as a plain msgpack map (binary data as bin). */
export function encodeMessage(message: object): Buffer {
  return packr.pack(message);
}

/**
 * Decodes one frame; anything that is not valid msgpack is a `bad_request`, and a frame holding
 * more than `bounds` allows is `too_large` before any of it is decoded.
 */
export function decodeMessage(frame: Uint8Array, bounds: FrameBounds = DEFAULT_FRAME_BOUNDS): unknown {
  checkFrameStructure(frame, bounds);
  try {
    return unpackr.unpack(frame);
  } catch (error) {
    throw new BridgeError('bad_request', `the frame is not valid msgpack: ${error instanceof Error ? error.message : String(error)}`);
  }
}
