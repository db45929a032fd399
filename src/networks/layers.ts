import { ELEM_DOUBLE, ELEM_FLOAT, ELEM_INT64, GraphBuilder } from '../onnx/graph.ts';
import type { StateDict } from './state-dict.ts';

/**
 * PyTorch layers expressed as ONNX nodes, reading their parameters from a state dict under
 * the module's key prefix. Each returns the name of its output value.
 */
export class LayerBuilder {
  readonly graph = new GraphBuilder();
  readonly #weights: StateDict;

  constructor(weights: StateDict) {
    this.#weights = weights;
  }

  /**
   * `nn.Conv2d(in, out, k, padding=k//2)`, with a bias unless `bias: false`; returns the output
   * and the kernel size.
   */
  conv(x: string, prefix: string, inChannels: number, outChannels?: number, { bias = true } = {}): { y: string; kernel: number } {
    const [out, , kernel] = this.#weights.shape(`${prefix}.weight`);
    const weight = this.#weights.take(`${prefix}.weight`, [outChannels ?? out, inChannels, kernel, kernel]);
    const inputs = [x, this.graph.constant(`${prefix}.weight`, [out, inChannels, kernel, kernel], weight)];
    if (bias) inputs.push(this.graph.constant(`${prefix}.bias`, [out], this.#weights.take(`${prefix}.bias`, [outChannels ?? out])));
    const pad = Math.floor(kernel / 2);
    const y = this.graph.node('Conv', inputs, { kernel_shape: [kernel, kernel], pads: [pad, pad, pad, pad], strides: [1, 1] });
    return { y, kernel };
  }

  /** `nn.BatchNorm2d` in eval mode (running statistics, PyTorch's default epsilon). */
  batchNorm(x: string, prefix: string, channels: number): string {
    const names = ['weight', 'bias', 'running_mean', 'running_var'].map((p) =>
      this.graph.constant(`${prefix}.${p}`, [channels], this.#weights.take(`${prefix}.${p}`, [channels])),
    );
    this.#weights.skip(`${prefix}.num_batches_tracked`);
    return this.graph.node('BatchNormalization', [x, ...names], { epsilon: { float: 1e-5 } });
  }

  relu(x: string): string {
    return this.graph.node('Relu', [x]);
  }

  /** SiLU = x * sigmoid(x); opset 17 has no SiLU node (ORT fuses the pair). */
  silu(x: string): string {
    return this.graph.node('Mul', [x, this.graph.node('Sigmoid', [x])]);
  }

  add(a: string, b: string): string {
    return this.graph.node('Add', [a, b]);
  }

  /**
   * `nn.Upsample(scale_factor=s, mode='nearest')` as PyTorch computes it for NCHW tensors: output
   * size floor(in * s) in double precision, and output index o reads input min(floor(o * f), in - 1)
   * with f = float32(1 / s). ONNX Resize agrees except that it copies its input whenever the
   * output shape equals it (a 3x3 latent by 1.25), so for fractional factors the indices are
   * computed here and gathered. Integer factors never keep the shape and use Resize, which ORT
   * runs in its blocked NCHWc layout, where a Gather has to leave it and come back (8% of a TAESD decode).
   */
  upsampleNearest(x: string, factor: number, name: string): string {
    const g = this.graph;
    if (Number.isInteger(factor) && factor > 1) {
      const scales = g.constant(name, [4], Float32Array.of(1, 1, factor, factor));
      return g.node('Resize', [x, '', scales], { mode: 'nearest', coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' });
    }
    const shape = g.node('Shape', [x]);
    const one = g.constant(`${name}.one`, [], BigInt64Array.of(1n));
    const zero = g.constant(`${name}.zero`, [], BigInt64Array.of(0n));
    const scale = g.constant(`${name}.scale`, [], Float64Array.of(factor));
    const step = g.constant(`${name}.step`, [], Float32Array.of(Math.fround(1 / factor)));
    let y = x;
    for (const axis of [2, 3]) {
      const size = g.node('Gather', [shape, g.constant(`${name}.axis${axis}`, [], BigInt64Array.of(BigInt(axis)))], { axis: 0 });
      const outSize = g.node('Cast', [g.node('Floor', [g.node('Mul', [g.node('Cast', [size], { to: ELEM_DOUBLE }), scale])])], { to: ELEM_INT64 });
      const positions = g.node('Cast', [g.node('Range', [zero, outSize, one])], { to: ELEM_FLOAT });
      const nearest = g.node('Cast', [g.node('Floor', [g.node('Mul', [positions, step])])], { to: ELEM_INT64 });
      const indices = g.node('Min', [nearest, g.node('Sub', [size, one])]);
      y = g.node('Gather', [y, indices], { axis });
    }
    return y;
  }
}
