import { BridgeError } from './errors.ts';
import { FAMILIES, type FamilyName } from './families.ts';
import { makeLatent, toRaw, toSpace, type Latent } from './latent.ts';
import { buildNetwork } from './networks/network.ts';
import { checkTargetSize, networksOf, planHires, planUpscalers, sizeOf, type TargetSize } from './planner.ts';
import { resizeBilinear } from './resize.ts';
import type { LoadedNetwork, Runtime } from './runtime.ts';
import { readSafetensors } from './safetensors.ts';
import { hasUpscaler, interposerSpec, type ModelSpec } from './store/registry.ts';
import type { ModelSource } from './store/store.ts';
import { runTiled } from './tiling.ts';

export type { TargetSize } from './planner.ts';

export interface EngineOptions {
  readonly source: ModelSource;
  readonly runtime: Runtime;
  /** Largest tile side, in output latent pixels, of one network run; bounds peak memory. */
  readonly tileSize?: number;
}

export const DEFAULT_TILE_SIZE = 256;

export interface UpscaleResult {
  readonly latent: Latent;
  /** What was done, in words, e.g. "upscaler-v1-x2.0 64x64 -> 128x128". */
  readonly plan: string[];
}

export interface HiresResult extends UpscaleResult {
  readonly warnings: string[];
}

function describe(size: TargetSize): string {
  return `${size.height}x${size.width}`;
}

/**
 * Runs the networks on latents: upscaling to any size, converting between families, and both
 * for the webui's hires fix. Latents come and go in the space they were given (model or raw);
 * the networks always see raw VAE latents, which is what they were trained on.
 */
export class Engine {
  readonly #source: ModelSource;
  readonly #runtime: Runtime;
  readonly #tileSize: number;
  readonly #networks = new Map<string, Promise<LoadedNetwork>>();

  constructor(options: EngineOptions) {
    this.#source = options.source;
    this.#runtime = options.runtime;
    this.#tileSize = options.tileSize ?? DEFAULT_TILE_SIZE;
    if (!Number.isInteger(this.#tileSize) || this.#tileSize < 8) throw new BridgeError('bad_request', `tile size must be an integer >= 8, got ${this.#tileSize}`);
  }

  get device(): string {
    return this.#runtime.device;
  }

  loadedModels(): string[] {
    return [...this.#networks.keys()];
  }

  /** Loads each network once; concurrent first requests share the load, a failed load is retried next time. */
  #network(spec: ModelSpec): Promise<LoadedNetwork> {
    let loading = this.#networks.get(spec.name);
    if (loading === undefined) {
      loading = this.#load(spec);
      this.#networks.set(spec.name, loading);
      loading.catch(() => this.#networks.delete(spec.name));
    }
    return loading;
  }

  async #load(spec: ModelSpec): Promise<LoadedNetwork> {
    const file = await this.#source.resolve(spec);
    const graph = buildNetwork(spec.kind, await readSafetensors(file), spec.factor, file);
    const expectedIn = FAMILIES[spec.from].channels;
    const expectedOut = FAMILIES[spec.to].channels;
    if (graph.inChannels !== expectedIn || graph.outChannels !== expectedOut) {
      throw new BridgeError(
        'bad_weights',
        `${file} maps ${graph.inChannels} to ${graph.outChannels} channels, but ${spec.name} must map ${expectedIn} to ${expectedOut}`,
      );
    }
    return this.#runtime.load(graph);
  }

  /**
   * Loads (downloading if need be) every network a request will run, without running any, so a
   * caller can keep slow model loading out of its compute queue. `target` absent means a plain
   * conversion. A request the engine will refuse loads nothing: the request itself reports why.
   */
  async prepare(from: FamilyName, to: FamilyName, source: TargetSize, target?: TargetSize): Promise<void> {
    let specs: ModelSpec[];
    try {
      if (target === undefined) specs = from === to ? [] : [interposerSpec(from, to)];
      else specs = networksOf(planHires(from, to, source, target).steps, source);
    } catch (error) {
      if (error instanceof BridgeError) return;
      throw error;
    }
    await Promise.all(specs.map((spec) => this.#network(spec)));
  }

  async #run(spec: ModelSpec, raw: Latent, family: FamilyName): Promise<Latent> {
    const network = await this.#network(spec);
    const out = await runTiled((tile) => network.run(tile), network.graph, raw, this.#tileSize);
    return makeLatent(family, 'raw', out.shape, out.data);
  }

  /** Raw-space upscale through the planned chain of networks, then an exact resize to the target. */
  async #upscaleRaw(raw: Latent, target: TargetSize, plan: string[]): Promise<Latent> {
    let latent = raw;
    for (const spec of planUpscalers(raw.family, sizeOf(latent), target)) {
      const before = describe(sizeOf(latent));
      latent = await this.#run(spec, latent, latent.family);
      plan.push(`${spec.name} ${before} -> ${describe(sizeOf(latent))}`);
    }
    return this.#resize(latent, target, plan);
  }

  #resize(latent: Latent, target: TargetSize, plan: string[]): Latent {
    if (latent.shape[2] === target.height && latent.shape[3] === target.width) return latent;
    const resized = resizeBilinear(latent, target.height, target.width);
    plan.push(`bilinear ${describe(sizeOf(latent))} -> ${describe(target)}`);
    return makeLatent(latent.family, latent.space, resized.shape, resized.data);
  }

  async upscale(latent: Latent, target: TargetSize): Promise<UpscaleResult> {
    checkTargetSize(target);
    const enlarges = target.height > latent.shape[2] || target.width > latent.shape[3];
    if (enlarges && !hasUpscaler(latent.family)) {
      throw new BridgeError('unsupported_direction', `no neural upscaler exists for ${latent.family} latents (city96's upscaler v2.1 covers v1 and xl)`);
    }
    const plan: string[] = [];
    const raw = await this.#upscaleRaw(toRaw(latent), target, plan);
    return { latent: toSpace(raw, latent.space), plan };
  }

  async interpose(latent: Latent, to: FamilyName): Promise<Latent> {
    if (latent.family === to) return latent;
    return toSpace(await this.#run(interposerSpec(latent.family, to), toRaw(latent), to), latent.space);
  }

  /** The webui's hires fix in one call: convert to the hires model's family and reach the target size. */
  async hires(latent: Latent, to: FamilyName, target: TargetSize): Promise<HiresResult> {
    checkTargetSize(target);
    const { steps, warnings } = planHires(latent.family, to, sizeOf(latent), target);
    const plan: string[] = [];
    let raw = toRaw(latent);
    for (const step of steps) {
      if (step.kind === 'interpose') {
        const before = describe(sizeOf(raw));
        raw = await this.#run(step.spec, raw, step.spec.to);
        plan.push(`${step.spec.name} ${before} -> ${describe(sizeOf(raw))}`);
      } else if (step.kind === 'upscale') {
        raw = await this.#upscaleRaw(raw, step.target, plan);
      } else {
        raw = this.#resize(raw, step.target, plan);
      }
    }
    return { latent: toSpace(raw, latent.space), plan, warnings };
  }
}
