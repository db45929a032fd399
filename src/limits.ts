import { BridgeError } from './errors.ts';
import { scaledSize, type Size } from './tensor.ts';

/**
 * The bounds on the work one request may ask for. Every entry point applies the same ones: the
 * server to each message, the CLI to its arguments, both starting from these defaults and both
 * raising them only when told to (flags and environment variables of the same names).
 */
export interface WorkLimits {
  /** Largest height or width, in latent pixels, of a requested size or a result. */
  readonly maxSide: number;
  /** Largest element count of any tensor received or produced. */
  readonly maxElements: number;
  /** Largest `scale` of an upscale. */
  readonly maxScale: number;
  /** Refuse latents holding NaN or infinity: the networks would spread it over the whole result. */
  readonly checkFinite: boolean;
}

export const DEFAULT_WORK_LIMITS: WorkLimits = {
  // 8192 image pixels a side: beyond what the webui makes, and minutes of CPU per request already.
  maxSide: 1024,
  // A batch of 16 SDXL latents of 1024x1024 images, or 3 Flux ones of 2048x2048: 16 MB in
  // float32, which leaves a 16 MiB frame room for the other fields.
  maxElements: 4_000_000,
  maxScale: 16,
  checkFinite: true,
};

/** How each limit is named to users, so that an error says how to raise it. */
const LIMIT_FLAGS: Readonly<Record<Exclude<keyof WorkLimits, 'checkFinite'>, string>> = {
  maxSide: '--max-side',
  maxElements: '--max-elements',
  maxScale: '--max-scale',
};

function tooLarge(what: string, limit: keyof typeof LIMIT_FLAGS, limits: WorkLimits): BridgeError {
  return new BridgeError('too_large', `${what}, beyond the limit of ${limits[limit]} (${LIMIT_FLAGS[limit]})`);
}

/** A requested size: positive integers, each side within `maxSide`. */
export function checkTargetSize(target: Size, limits: WorkLimits): void {
  for (const [axis, value] of Object.entries(target)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new BridgeError('bad_request', `target ${axis} must be a positive integer, got ${value}`);
    if (value > limits.maxSide) throw tooLarge(`target ${axis} ${value} latent pixels is`, 'maxSide', limits);
  }
}

/** `floor(size * scale)`, the way the webui rounds its hires size, checked like any requested size. */
export function scaledTarget(size: Size, scale: number, limits: WorkLimits): Size {
  if (!Number.isFinite(scale) || scale <= 0) throw new BridgeError('bad_request', `scale must be a number greater than 0, got ${scale}`);
  if (scale > limits.maxScale) throw tooLarge(`scale ${scale} is`, 'maxScale', limits);
  const target = scaledSize(size, scale);
  if (target.height < 1 || target.width < 1) {
    throw new BridgeError('bad_request', `scale ${scale} shrinks ${size.height}x${size.width} latent pixels to nothing`);
  }
  if (target.height > limits.maxSide || target.width > limits.maxSide) {
    throw tooLarge(`scale ${scale} gives ${target.height}x${target.width} latent pixels, which is`, 'maxSide', limits);
  }
  return target;
}

/** The element count of a tensor received or produced, checked factor by factor so it never overflows. */
export function checkElements(what: string, shape: readonly number[], limits: WorkLimits): void {
  let elements = 1;
  for (const d of shape) {
    elements *= d;
    if (elements > limits.maxElements) {
      throw tooLarge(`${what} of shape [${shape.join(', ')}] holds more than ${limits.maxElements} elements, which is`, 'maxElements', limits);
    }
  }
}

/** Throws `bad_tensor` at the first NaN or infinity, unless the limits allow them. */
export function checkFinite(what: string, data: Float32Array, limits: WorkLimits): void {
  if (!limits.checkFinite) return;
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i])) {
      throw new BridgeError(
        'bad_tensor',
        `${what} holds a non-finite value (${data[i]}) at element ${i}; the latent is broken (a fp16 VAE overflow?). ` +
          'Pass --allow-nonfinite to process it anyway',
      );
    }
  }
}
