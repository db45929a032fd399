import type { NetworkGraph } from './networks/network-graph.ts';
import { TAESD_TILE_SIZE } from './networks/taesd-decoder.ts';
import type { Tensor4 } from './tensor.ts';

/**
 * Runs a fully convolutional network on a large input in overlapping tiles. Each tile carries a
 * margin wider than the network's receptive field, and only its core is kept, so the stitched
 * result equals the untiled one while peak memory follows the tile size, not the input size.
 */

type Run = (input: Tensor4) => Promise<Tensor4>;
type Geometry = Pick<NetworkGraph, 'architecture' | 'factor' | 'inputRadius' | 'outputRadius'>;

/** Largest tile side, in output latent pixels, of one interposer or upscaler run; bounds peak memory. */
export const LATENT_TILE_SIZE = 256;

/** The tile side a network runs with unless told otherwise (the decoder's output is in image pixels). */
export function tileSizeFor(geometry: Pick<NetworkGraph, 'architecture'>): number {
  return geometry.architecture === 'taesd-decoder' ? TAESD_TILE_SIZE : LATENT_TILE_SIZE;
}

/**
 * Tile starts must be multiples of q, where factor = p / q: a nearest resize maps output o to
 * input floor(o / factor), which commutes with a shift of the input only by such whole steps.
 * Undefined when no q up to 64 works: then no spatial tiling reproduces the whole run.
 */
export function alignmentOf(factor: number): number | undefined {
  for (let q = 1; q <= 64; q++) {
    if (Math.abs(factor * q - Math.round(factor * q)) < 1e-9) return q;
  }
  return undefined;
}

function roundUp(value: number, step: number): number {
  return Math.ceil(value / step) * step;
}

interface Span {
  /** Input range of the tile, margin included. */
  readonly start: number;
  readonly end: number;
  /** Output range the tile contributes. */
  readonly keepStart: number;
  readonly keepEnd: number;
}

function spans(size: number, core: number, margin: number, factor: number): Span[] {
  const out: Span[] = [];
  for (let coreStart = 0; coreStart < size; coreStart += core) {
    const coreEnd = Math.min(coreStart + core, size);
    out.push({
      start: Math.max(0, coreStart - margin),
      end: Math.min(size, coreEnd + margin),
      keepStart: Math.floor(coreStart * factor),
      keepEnd: Math.floor(coreEnd * factor),
    });
  }
  return out;
}

/** One batch item's input tile. */
function crop(input: Tensor4, item: number, rows: Span, cols: Span): Tensor4 {
  const [, c, h, w] = input.shape;
  const height = rows.end - rows.start;
  const width = cols.end - cols.start;
  const out = new Float32Array(c * height * width);
  for (let channel = 0; channel < c; channel++) {
    const plane = (item * c + channel) * h * w;
    for (let y = 0; y < height; y++) {
      const from = plane + (rows.start + y) * w + cols.start;
      out.set(input.data.subarray(from, from + width), (channel * height + y) * width);
    }
  }
  return { shape: [1, c, height, width], data: out };
}

/**
 * Batch items run one at a time, so memory does not grow with the batch either.
 * @param maxTileSide largest tile side, in output pixels, that one network run should produce; a
 *   tile is never narrower than three margins, even if that exceeds it.
 */
export async function runTiled(run: Run, geometry: Geometry, input: Tensor4, maxTileSide = tileSizeFor(geometry)): Promise<Tensor4> {
  const { factor } = geometry;
  const [n, , height, width] = input.shape;
  const maxInputSide = Math.floor(maxTileSide / factor);
  const fits = height <= maxInputSide && width <= maxInputSide;
  const q = alignmentOf(factor);
  // Without an alignment only the batch is split: a whole item at a time is still exact.
  if (n === 1 && (fits || q === undefined)) return run(input);

  let core = Math.max(height, width);
  let margin = 0;
  if (!fits && q !== undefined) {
    margin = roundUp(geometry.inputRadius + Math.ceil(geometry.outputRadius / factor) + 1, q);
    // Below a core as wide as a margin, tiles would mostly recompute each other's margins.
    core = Math.max(margin, Math.floor((maxInputSide - 2 * margin) / q) * q);
  }
  const rowSpans = spans(height, core, margin, factor);
  const colSpans = spans(width, core, margin, factor);

  const outHeight = Math.floor(height * factor);
  const outWidth = Math.floor(width * factor);
  let output: Float32Array | undefined;
  let channels = 0;
  for (let item = 0; item < n; item++) {
    for (const rows of rowSpans) {
      for (const cols of colSpans) {
        const tile = await run(crop(input, item, rows, cols));
        channels = tile.shape[1];
        output ??= new Float32Array(n * channels * outHeight * outWidth);
        const [, , tileHeight, tileWidth] = tile.shape;
        const offsetY = rows.keepStart - rows.start * factor;
        const offsetX = cols.keepStart - cols.start * factor;
        const keepWidth = cols.keepEnd - cols.keepStart;
        for (let channel = 0; channel < channels; channel++) {
          const plane = item * channels + channel;
          for (let y = rows.keepStart; y < rows.keepEnd; y++) {
            const from = (channel * tileHeight + (y - rows.keepStart + offsetY)) * tileWidth + offsetX;
            output.set(tile.data.subarray(from, from + keepWidth), (plane * outHeight + y) * outWidth + cols.keepStart);
          }
        }
      }
    }
  }
  return { shape: [n, channels, outHeight, outWidth], data: output as Float32Array };
}
