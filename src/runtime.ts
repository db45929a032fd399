import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { BridgeError } from './errors.ts';
import { GraphBuilder } from './onnx/graph.ts';
import { INPUT_NAME, OUTPUT_NAME, type NetworkGraph } from './networks/network-graph.ts';
import { RuntimeThread } from './runtime-thread.ts';
import { scaledSize, tensor4, type Tensor4 } from './tensor.ts';

/** `auto` picks the first GPU provider that works here (CUDA, DirectML on Windows, WebGPU), else the CPU. */
export const DEVICE_CHOICES = ['auto', 'cuda', 'dml', 'webgpu', 'cpu'] as const;
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

/** A one-node graph used to find out whether an execution provider really works here. */
function probeModel(): Uint8Array {
  const graph = new GraphBuilder();
  graph.input(INPUT_NAME, [1, 1, 1, 1]);
  graph.node('Relu', [INPUT_NAME], {}, OUTPUT_NAME);
  graph.output(OUTPUT_NAME, [1, 1, 1, 1]);
  return graph.toBytes('latent-bridge probe');
}

/** The CUDA provider is a separate download; without its library file there is nothing to probe. */
function cudaProviderInstalled(): boolean {
  const packageDir = path.dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
  const binding = path.join(packageDir, 'bin', 'napi-v6', process.platform, process.arch);
  return existsSync(path.join(binding, 'libonnxruntime_providers_cuda.so')) || existsSync(path.join(binding, 'onnxruntime_providers_cuda.dll'));
}

/** Whether the Vulkan loader that WebGPU (Dawn) opens on Linux is where the dynamic linker looks. */
function vulkanLoaderPresent(): boolean {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':'), '/usr/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib/x86_64-linux-gnu', '/usr/local/lib'];
  return dirs.some((dir) => dir !== '' && existsSync(path.join(dir, 'libvulkan.so.1')));
}

/** The sentence of an ORT error that says what is wrong, without the source location before it. */
function reasonOf(error: Error): string {
  const line = error.message.split('\n')[0];
  const afterCheck = / was false\. (.*)$/.exec(line);
  return afterCheck?.[1] ?? line;
}

/** Why a GPU provider cannot be tried on this machine at all, before any probe; undefined when it can. */
function unavailableHere(device: Device): string | undefined {
  switch (device) {
    case 'cuda':
      if (process.platform !== 'linux' || process.arch !== 'x64') return 'onnxruntime-node has CUDA on Linux x64 only';
      return cudaProviderInstalled() ? undefined : 'the CUDA provider is not installed';
    case 'dml':
      return process.platform === 'win32' ? undefined : 'DirectML is for Windows';
    case 'webgpu':
      if (process.platform !== 'linux') return undefined;
      if (process.arch !== 'x64') return 'onnxruntime-node has WebGPU on Linux x64 only';
      // Without the Vulkan loader Dawn finds no adapter anyway, after printing a warning of its own.
      return vulkanLoaderPresent() ? undefined : 'no Vulkan loader (libvulkan.so.1, package libvulkan1)';
    case 'cpu':
      return undefined;
  }
}

/** What to install for each GPU provider (docs/models.md and the README say the same). */
const HELP: Readonly<Record<Exclude<Device, 'cpu'>, string>> = {
  cuda: 'install the CUDA provider with `node node_modules/onnxruntime-node/script/install.js --onnxruntime-node-install` (needs CUDA 12 and cuDNN 9)',
  dml: 'DirectML needs Windows 10 1903 or newer and a DirectX 12 GPU',
  webgpu: 'WebGPU needs a GPU driver with Vulkan (Linux: the libvulkan1 package and the vendor driver), Direct3D 12 (Windows) or Metal (macOS)',
};

/** The GPU providers `auto` tries on this platform, in order (what onnxruntime-node's binaries hold). */
function autoOrder(): readonly Exclude<Device, 'cpu'>[] {
  switch (process.platform) {
    case 'linux':
      return ['cuda', 'webgpu'];
    case 'win32':
      return ['dml', 'webgpu'];
    case 'darwin':
      return ['webgpu'];
    default:
      return [];
  }
}

/** onnxruntime-node with the execution provider chosen once; sessions live and run in one thread of their own. */
export class Runtime {
  readonly device: Device;
  /** Which providers `auto` passed over and why, for the logs and /healthz. */
  readonly note: string | undefined;
  readonly #threads: number;
  readonly #thread: RuntimeThread;

  private constructor(thread: RuntimeThread, device: Device, threads: number, note: string | undefined) {
    this.#thread = thread;
    this.device = device;
    this.#threads = threads;
    this.note = note;
  }

  static async create(options: RuntimeOptions = {}): Promise<Runtime> {
    const choice = options.device ?? 'auto';
    const threads = options.threads ?? 2;
    if (!Number.isInteger(threads) || threads < 1) throw new BridgeError('bad_request', `threads must be a positive integer, got ${threads}`);
    const thread = new RuntimeThread();
    if (choice === 'cpu') return new Runtime(thread, 'cpu', threads, undefined);
    if (choice === 'auto') {
      const passed: string[] = [];
      for (const device of autoOrder()) {
        const failure = unavailableHere(device) ?? (await Runtime.#probe(thread, device, threads));
        if (failure === undefined) return new Runtime(thread, device, threads, passed.length > 0 ? passed.join('; ') : undefined);
        passed.push(`${device}: ${failure}`);
      }
      return new Runtime(thread, 'cpu', threads, `no GPU provider works here (${passed.join('; ')})`);
    }
    const failure = unavailableHere(choice) ?? (await Runtime.#probe(thread, choice, threads));
    if (failure !== undefined) {
      await thread.close();
      throw new BridgeError('internal', `the ${choice} execution provider does not work here: ${failure}; ${HELP[choice]}, or use --device cpu or auto`);
    }
    return new Runtime(thread, choice, threads, undefined);
  }

  /** Why `device` does not work, or undefined when a one-node session loads and runs on it. */
  static async #probe(thread: RuntimeThread, device: Device, threads: number): Promise<string | undefined> {
    try {
      const { session } = await thread.request({ type: 'load', onnx: probeModel(), device, threads });
      await thread.request({ type: 'run', session: session as number, data: Float32Array.of(-1), shape: [1, 1, 1, 1] });
      await thread.request({ type: 'release', session: session as number });
      return undefined;
    } catch (error) {
      return reasonOf(error as Error);
    }
  }

  async load(graph: NetworkGraph): Promise<LoadedNetwork> {
    const network = new LoadedNetwork(graph, this.#thread, () => this.#open(graph));
    await network.open();
    return network;
  }

  async #open(graph: NetworkGraph): Promise<number> {
    // A copy goes over: the graph keeps its bytes for a session made again in a new thread.
    const { session } = await this.#thread.request({ type: 'load', onnx: graph.onnx.slice(), device: this.device, threads: this.#threads });
    return session as number;
  }

  /** Ends the runtime thread and every session in it. */
  close(): Promise<void> {
    return this.#thread.close();
  }
}

/** A network with its inference session, created once and reused for every request. */
export class LoadedNetwork {
  readonly graph: NetworkGraph;
  readonly #thread: RuntimeThread;
  readonly #create: () => Promise<number>;
  #session: { readonly id: number; readonly generation: number } | undefined;

  constructor(graph: NetworkGraph, thread: RuntimeThread, create: () => Promise<number>) {
    this.graph = graph;
    this.#thread = thread;
    this.#create = create;
  }

  /** Makes the session, again when the thread it lived in has died since. */
  async open(): Promise<number> {
    this.#thread.start();
    const generation = this.#thread.generation;
    if (this.#session?.generation === generation) return this.#session.id;
    const id = await this.#create();
    this.#session = { id, generation };
    return id;
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
    const session = await this.open();
    // The input goes over as a copy: the caller's latent stays whole.
    const data = input.data.slice();
    const reply = await this.#thread.request({ type: 'run', session, data, shape: [...input.shape] }, [data.buffer]);
    return tensor4(reply.shape as number[], reply.data as Float32Array);
  }

  async release(): Promise<void> {
    const session = this.#session;
    this.#session = undefined;
    if (session !== undefined && session.generation === this.#thread.generation) await this.#thread.request({ type: 'release', session: session.id });
  }
}
