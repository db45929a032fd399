import { BridgeError } from '../errors.ts';
import { toFloat32, type SafetensorsFile } from '../safetensors.ts';

/**
 * A PyTorch state dict read from safetensors, consumed key by key while a graph is built, so
 * that a file which does not fit the layout is named by its first missing or misshapen key,
 * and keys the layout never used are reported too.
 */
export class StateDict {
  readonly #file: SafetensorsFile;
  readonly #where: string;
  readonly #used = new Set<string>();

  constructor(file: SafetensorsFile, where: string) {
    this.#file = file;
    this.#where = where;
  }

  has(key: string): boolean {
    return this.#file.tensors.has(key);
  }

  shape(key: string): readonly number[] {
    const tensor = this.#file.tensors.get(key);
    if (tensor === undefined) throw this.#mismatch(`missing key "${key}"`);
    return tensor.shape;
  }

  /** Takes a float tensor, checking its shape where the layout fixes it (`-1` = any size). */
  take(key: string, expected: readonly number[]): Float32Array {
    const tensor = this.#file.tensors.get(key);
    if (tensor === undefined) throw this.#mismatch(`missing key "${key}"`);
    const fits = tensor.shape.length === expected.length && expected.every((d, i) => d === -1 || d === tensor.shape[i]);
    if (!fits) {
      throw this.#mismatch(`key "${key}" has shape [${tensor.shape.join(', ')}], expected [${expected.map((d) => (d === -1 ? '*' : d)).join(', ')}]`);
    }
    this.#used.add(key);
    return toFloat32(tensor, key);
  }

  /** Marks bookkeeping keys (BatchNorm's num_batches_tracked) as understood without reading them. */
  skip(key: string): void {
    if (this.#file.tensors.has(key)) this.#used.add(key);
  }

  /** Fails if the file holds keys the layout did not use: it is then some other network. */
  assertAllUsed(layout: string): void {
    const unused = [...this.#file.tensors.keys()].filter((key) => !this.#used.has(key));
    if (unused.length > 0) {
      throw this.#mismatch(`unexpected key "${unused[0]}" for the ${layout} layout${unused.length > 1 ? ` (and ${unused.length - 1} more)` : ''}`);
    }
  }

  #mismatch(message: string): BridgeError {
    return new BridgeError('bad_weights', `${this.#where} does not fit the expected layout: ${message}`);
  }
}
