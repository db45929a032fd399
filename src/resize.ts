import type { Tensor4 } from './tensor.ts';

/**
 * Bilinear resize of every channel to an exact size, with PyTorch's `align_corners=False`
 * sampling (the webui's "Latent" hires mode) when enlarging; when shrinking, the filter widens
 * to the scale like PyTorch's `antialias=True`, so no source pixel is skipped.
 */
export function resizeBilinear(input: Tensor4, height: number, width: number): Tensor4 {
  const [n, c, h, w] = input.shape;
  if (h === height && w === width) return input;
  const rows = axisWeights(h, height);
  const cols = axisWeights(w, width);
  const out = new Float32Array(n * c * height * width);
  const row = new Float32Array(w);
  for (let plane = 0; plane < n * c; plane++) {
    const src = plane * h * w;
    const dst = plane * height * width;
    for (let y = 0; y < height; y++) {
      row.fill(0);
      const taps = rows[y];
      for (let t = 0; t < taps.index.length; t++) {
        const base = src + taps.index[t] * w;
        const weight = taps.weight[t];
        for (let x = 0; x < w; x++) row[x] += weight * input.data[base + x];
      }
      for (let x = 0; x < width; x++) {
        const tapsX = cols[x];
        let sum = 0;
        for (let t = 0; t < tapsX.index.length; t++) sum += tapsX.weight[t] * row[tapsX.index[t]];
        out[dst + y * width + x] = sum;
      }
    }
  }
  return { shape: [n, c, height, width], data: out };
}

interface Taps {
  readonly index: Int32Array;
  readonly weight: Float32Array;
}

/** Source taps and weights for each output position along one axis. */
function axisWeights(inSize: number, outSize: number): Taps[] {
  const scale = inSize / outSize;
  const taps: Taps[] = [];
  for (let o = 0; o < outSize; o++) {
    const center = (o + 0.5) * scale;
    if (scale <= 1) {
      // align_corners=False bilinear clamps the sample position to the edge pixels.
      const position = Math.min(Math.max(center - 0.5, 0), inSize - 1);
      const lower = Math.floor(position);
      const frac = position - lower;
      taps.push({ index: Int32Array.of(lower, Math.min(lower + 1, inSize - 1)), weight: Float32Array.of(1 - frac, frac) });
      continue;
    }
    // Downscaling: a triangle filter as wide as the scale, normalised over the pixels it covers.
    const first = Math.max(0, Math.floor(center - scale));
    const last = Math.min(inSize - 1, Math.ceil(center + scale));
    const index: number[] = [];
    const weight: number[] = [];
    for (let i = first; i <= last; i++) {
      const w = 1 - Math.abs((i + 0.5 - center) / scale);
      if (w > 0) {
        index.push(i);
        weight.push(w);
      }
    }
    const total = weight.reduce((a, b) => a + b, 0);
    taps.push({ index: Int32Array.from(index), weight: Float32Array.from(weight, (w) => w / total) });
  }
  return taps;
}
