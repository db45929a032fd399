import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { BridgeError } from './errors.ts';
import { GraphBuilder } from './onnx/graph.ts';
import { INPUT_NAME, OUTPUT_NAME, type NetworkGraph } from './networks/network-graph.ts';
import { scaledSize } from './planner.ts';
import { tensor4, type Tensor4 } from './tensor.ts';

/** `auto` picks CUDA when its provider is installed and works, else the CPU. */
export const DEVICE_CHOICES = ['auto', 'cuda', 'webgpu', 'cpu'] as const;
export type DeviceChoice = (typeof DEVICE_CHOICES)[number];
export type Device = Exclude<DeviceChoice, 'auto'>;

export interface RuntimeOptions {
  readonly device?: DeviceChoice;
  /** Intra-op threads for the CPU provider; 2 measured best on a 2-core machine next to a busy webui. */
  readonly threads?: number;
}

export function isDeviceChoice(value: unknown): value is DeviceChoice {
  return typeof value === 'string' && (DEVICE_CHOICES as readonly string[]).includes(value);
}

function sessionOptions(device: Device, threads: number): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [device],
    // 'all' lets ORT rewrite convolutions into its blocked NCHWc layout: 1.5-2x faster on CPU (runtime-notes §2).
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    // Spinning threads would steal CPU from the webui between requests, for no measurable gain.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
    // A memory pattern is planned per input shape and allocated beside the arena's own chunks: a
    // 1024-pixel TAESD decode peaked at 2.0 GB with it and 1.2 GB without, at the same speed.
    enableMemPattern: false,
  };
}

/** A one-node graph used to find out whether an execution provider really works here. */
function probeModel(): Uint8Array {
  const graph = new GraphBuilder();
  graph.input(INPUT_NAME, [1, 1, 1, 1]);
  graph.node('Relu', [INPUT_NAME], {}, OUTPUT_NAME);
  graph.output(OUTPUT_NAME, [1, 1, 1, 1]);
  return graph.toBytes('latent-bridge probe');
}

async function works(device: Device, threads: number): Promise<string | undefined> {
  try {
    const session = await ort.InferenceSession.create(probeModel(), sessionOptions(device, threads));
    await session.run({ [INPUT_NAME]: new ort.Tensor('float32', Float32Array.of(-1), [1, 1, 1, 1]) });
    await session.release();
    return undefined;
  } catch (error) {
    return (error as Error).message.split('\n')[0];
  }
}

/** The CUDA provider is a separate download; without its library file there is nothing to probe. */
function cudaProviderInstalled(): boolean {
  const packageDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const binding = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  return existsSync(path.join(binding, 'libonnxruntime_providers_cuda.so')) || existsSync(path.join(binding, 'onnxruntime_providers_cuda.dll'));
}

const CUDA_HELP =
  'install the CUDA provider with `node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install=cuda12` (needs CUDA 12 and cuDNN 9)';

/** onnxruntime-node with the execution provider chosen once; hands out sessions for network graphs. */
export class Runtime {
  readonly device: Device;
  /** Why `auto` settled for the CPU, for the logs and /healthz. */
  readonly note: string | undefined;
  readonly #threads: number;

  private constructor(device: Device, threads: number, note: string | undefined) {
    this.device = device;
    this.#threads = threads;
    this.note = note;
  }

  static async create(options: RuntimeOptions = {}): Promise<Runtime> {
    const choice = options.device ?? 'auto';
    const threads = options.threads ?? 2;
    if (!Number.isInteger(threads) || threads < 1) throw new BridgeError('bad_request', `threads must be a positive integer, got ${threads}`);
    if (choice === 'cpu') return new Runtime('cpu', threads, undefined);
    if (choice === 'auto') {
      if (!cudaProviderInstalled()) return new Runtime('cpu', threads, 'the CUDA provider is not installed');
      const failure = await works('cuda', threads);
      return failure === undefined ? new Runtime('cuda', threads, undefined) : new Runtime('cpu', threads, `CUDA unavailable (${failure})`);
    }
    const failure = choice === 'cuda' && !cudaProviderInstalled() ? 'the CUDA provider is not installed' : await works(choice, threads);
    if (failure !== undefined) {
      const help = choice === 'cuda' ? `; ${CUDA_HELP}, or use --device cpu` : '; use --device cpu or auto';
      throw new BridgeError('internal', `the ${choice} execution provider does not work here: ${failure}${help}`);
    }
    return new Runtime(choice, threads, undefined);
  }

  async load(graph: NetworkGraph): Promise<LoadedNetwork> {
    const session = await ort.InferenceSession.create(graph.onnx, sessionOptions(this.device, this.#threads));
    return new LoadedNetwork(graph, session);
  }
}

/** A network with its inference session, created once and reused for every request. */
export class LoadedNetwork {
  readonly graph: NetworkGraph;
  readonly #session: ort.InferenceSession;

  constructor(graph: NetworkGraph, session: ort.InferenceSession) {
    this.graph = graph;
    this.#session = session;
  }

  async run(input: Tensor4): Promise<Tensor4> {
    if (input.shape[1] !== this.graph.inChannels) {
      throw new BridgeError('bad_tensor', `${this.graph.description} takes ${this.graph.inChannels} channels, got ${input.shape[1]}`);
    }
    const [, , height, width] = input.shape;
    const out = scaledSize({ height, width }, this.graph.factor);
    if (out.height < 1 || out.width < 1) {
      throw new BridgeError('bad_tensor', `${this.graph.description} turns a ${height}x${width} input into ${out.height}x${out.width}: too small to run`);
    }
    const feeds = { [INPUT_NAME]: new ort.Tensor('float32', input.data, [...input.shape]) };
    const result = (await this.#session.run(feeds))[OUTPUT_NAME];
    const data = result.data as Float32Array;
    const shape = [...result.dims];
    result.dispose();
    return tensor4(shape, data);
  }

  async release(): Promise<void> {
    await this.#session.release();
  }
}
