import { GraphBuilder } from '../onnx/graph.ts';
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

  /** `nn.Conv2d(in, out, k, padding=k//2)` with bias; returns the output and the kernel size. */
  conv(x: string, prefix: string, inChannels: number, outChannels?: number): { y: string; kernel: number } {
    const [out, , kernel] = this.#weights.shape(`${prefix}.weight`);
    const weight = this.#weights.take(`${prefix}.weight`, [outChannels ?? out, inChannels, kernel, kernel]);
    const bias = this.#weights.take(`${prefix}.bias`, [outChannels ?? out]);
    const w = this.graph.constant(`${prefix}.weight`, [out, inChannels, kernel, kernel], weight);
    const b = this.graph.constant(`${prefix}.bias`, [out], bias);
    const pad = Math.floor(kernel / 2);
    const y = this.graph.node('Conv', [x, w, b], { kernel_shape: [kernel, kernel], pads: [pad, pad, pad, pad], strides: [1, 1] });
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
   * `nn.Upsample(scale_factor=s, mode='nearest')`: output size floor(in * s), output index o
   * reads input floor(o / s), which is ONNX Resize with asymmetric coordinates and floor rounding.
   */
  upsampleNearest(x: string, factor: number, name: string): string {
    const scales = this.graph.constant(name, [4], Float32Array.from([1, 1, factor, factor]));
    return this.graph.node('Resize', [x, '', scales], {
      mode: 'nearest',
      coordinate_transformation_mode: 'asymmetric',
      nearest_mode: 'floor',
    });
  }
}
