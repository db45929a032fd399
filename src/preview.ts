import { FAMILIES } from './families.ts';
import type { Latent } from './latent.ts';
import type { Tensor4 } from './tensor.ts';

/** An RGB8 image, row-major, three bytes per pixel, no row padding. */
export interface RgbImage {
  readonly width: number;
  readonly height: number;
  readonly data: Uint8Array;
}

export interface PreviewOptions {
  /** Batch item to draw (default 0); ignored when `grid` is set. */
  readonly index?: number;
  /** Draw every batch item, tiled left to right, top to bottom, in a near-square grid. */
  readonly grid?: boolean;
}

/** Columns and rows of the grid for a batch: as square as possible, wider rather than taller. */
export function gridLayout(batch: number): { columns: number; rows: number } {
  const columns = Math.ceil(Math.sqrt(batch));
  return { columns, rows: Math.ceil(batch / columns) };
}

/**
 * Draws a model-space latent with its family's linear latent->RGB approximation, as ComfyUI's
 * Latent2RGB previewer does: rgb = x·F + b, then ((rgb + 1) / 2) clamped to [0, 1] times 255,
 * rounded. One pixel per latent pixel; this runs every sampling step, so it is a single pass
 * with the affine map folded into the factors.
 */
export function renderPreview(latent: Latent, options: PreviewOptions = {}): RgbImage {
  const [batch, , height, width] = latent.shape;
  if (!options.grid) {
    const image = { width, height, data: new Uint8Array(width * height * 3) };
    drawItem(latent, options.index ?? 0, image, 0, 0);
    return image;
  }
  const { columns, rows } = gridLayout(batch);
  const image = { width: columns * width, height: rows * height, data: new Uint8Array(columns * width * rows * height * 3) };
  for (let item = 0; item < batch; item++) {
    drawItem(latent, item, image, (item % columns) * width, Math.floor(item / columns) * height);
  }
  return image;
}

function drawItem(latent: Latent, item: number, image: RgbImage, left: number, top: number): void {
  const [, channels, height, width] = latent.shape;
  const family = FAMILIES[latent.family];
  const plane = height * width;
  // 255 * ((x·F + b) + 1) / 2 = x·(127.5 F) + 127.5 (b + 1)
  const factors = new Float64Array(channels * 3);
  for (let k = 0; k < channels; k++) {
    for (let j = 0; j < 3; j++) factors[k * 3 + j] = family.rgbFactors[k][j] * 127.5;
  }
  const r0 = (family.rgbBias[0] + 1) * 127.5;
  const g0 = (family.rgbBias[1] + 1) * 127.5;
  const b0 = (family.rgbBias[2] + 1) * 127.5;
  const src = latent.data;
  const out = image.data;
  const base = item * channels * plane;
  for (let y = 0; y < height; y++) {
    let o = ((top + y) * image.width + left) * 3;
    let p = base + y * width;
    for (let x = 0; x < width; x++, p++, o += 3) {
      let r = r0;
      let g = g0;
      let b = b0;
      for (let k = 0, q = p, f = 0; k < channels; k++, q += plane, f += 3) {
        const v = src[q];
        r += v * factors[f];
        g += v * factors[f + 1];
        b += v * factors[f + 2];
      }
      // NaN fails both comparisons and `NaN | 0` is 0, so a broken latent draws black.
      out[o] = r <= 0 ? 0 : r >= 255 ? 255 : (r + 0.5) | 0;
      out[o + 1] = g <= 0 ? 0 : g >= 255 ? 255 : (g + 0.5) | 0;
      out[o + 2] = b <= 0 ? 0 : b >= 255 ? 255 : (b + 0.5) | 0;
    }
  }
}

/** [0, 1] to a byte, as the webui and ComfyUI turn decoded pictures into pixels (clamped, rounded). */
function toByte(value: number): number {
  // NaN fails both comparisons and `NaN | 0` is 0: a broken picture draws black.
  return value <= 0 ? 0 : value >= 1 ? 255 : (value * 255 + 0.5) | 0;
}

/**
 * A decoder's picture (NCHW, 3 channels, about [0, 1], e.g. TAESD's raw output) as an RGB8 image:
 * clamped to [0, 1], one batch item or, with `grid`, every item in the preview grid.
 */
export function imageFromDecoded(rgb: Tensor4, options: PreviewOptions = {}): RgbImage {
  const [batch, , height, width] = rgb.shape;
  const items = options.grid ? [...Array(batch).keys()] : [options.index ?? 0];
  const { columns, rows } = options.grid ? gridLayout(batch) : { columns: 1, rows: 1 };
  const image = { width: columns * width, height: rows * height, data: new Uint8Array(columns * width * rows * height * 3) };
  const plane = height * width;
  items.forEach((item, cell) => {
    const left = (cell % columns) * width;
    const top = Math.floor(cell / columns) * height;
    const base = item * 3 * plane;
    for (let y = 0; y < height; y++) {
      let o = ((top + y) * image.width + left) * 3;
      for (let x = 0, p = base + y * width; x < width; x++, p++, o += 3) {
        image.data[o] = toByte(rgb.data[p]);
        image.data[o + 1] = toByte(rgb.data[p + plane]);
        image.data[o + 2] = toByte(rgb.data[p + 2 * plane]);
      }
    }
  });
  return image;
}
