/**
 * Every failure that a user or a client can act on carries one of these codes.
 * The wire protocol sends the code verbatim, so the set is part of the public API.
 */
export const ERROR_CODES = [
  'bad_request',
  'bad_tensor',
  'bad_file',
  'bad_weights',
  'unknown_family',
  'unsupported_direction',
  'model_unavailable',
  'too_large',
  'busy',
  'unauthorized',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export class BridgeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'BridgeError';
    this.code = code;
  }
}

/** The code to report for any thrown value: ours as is, anything else is an internal error. */
export function errorCode(error: unknown): ErrorCode {
  return error instanceof BridgeError ? error.code : 'internal';
}
