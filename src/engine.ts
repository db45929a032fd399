import { stat } from 'node:fs/promises';
import { previewDecoderFor, type NetworkEntry } from './catalogue.ts';
import { formatBytes, SILENT_LOG, type ConsoleLog } from './console-log.ts';
import { BridgeError } from './errors.ts';
import { FAMILIES, type FamilyName } from './families.ts';
import { makeLatent, toModelSpace, toRaw, toSpace, type Latent } from './latent.ts';
import { buildNetwork } from './networks/network.ts';
import { DEFAULT_POOL_OPTIONS, NetworkPool, type NetworkPoolOptions } from './network-pool.ts';
import type { WorkLimits } from './limits.ts';
import { networksOf, planJob, type Job, type Plan, type PlanStep } from './planner.ts';
import { resizeBilinear } from './resize.ts';
import type { LoadedNetwork, Runtime } from './runtime.ts';
import { readSafetensors } from './safetensors.ts';
import type { ModelSource } from './store/store.ts';
import { imageFromDecoded, type PreviewOptions, type RgbImage } from './preview.ts';
import { batchItem, describeSize, sizeOf } from './tensor.ts';
import { runTiled } from './tiling.ts';

export interface EngineOptions {
  readonly source: ModelSource;
  readonly runtime: Runtime;
  /** How many networks stay loaded, and for how long without use. */
  readonly pool?: NetworkPoolOptions;
  /** Says when a network is loaded (which, from where, how long it took). */
  readonly log?: ConsoleLog;
}

/**
 * Runs plans (src/planner.ts) on latents: loads exactly the networks a plan names, then runs its
 * steps in order. Latents come and go in the space they were given (model or raw); the networks
 * always see raw VAE latents, which is what they were trained on.
 */
export class Engine {
  readonly #source: ModelSource;
  readonly #runtime: Runtime;
  readonly #pool: NetworkPool;
  readonly #log: ConsoleLog;

  constructor(options: EngineOptions) {
    this.#source = options.source;
    this.#runtime = options.runtime;
    this.#pool = new NetworkPool((entry) => this.#load(entry), options.pool ?? DEFAULT_POOL_OPTIONS);
    this.#log = options.log ?? SILENT_LOG;
  }

  get device(): string {
    return this.#runtime.device;
  }

  loadedModels(): string[] {
    return this.#pool.names();
  }

  async #load(entry: NetworkEntry): Promise<LoadedNetwork> {
    const file = await this.#source.resolve(entry);
    const started = performance.now();
    const decoder = entry.kind === 'taesd-decoder';
    // A decoder's factor is its architecture's; the others' is not in the weights.
    const graph = buildNetwork(entry.kind, await readSafetensors(file), decoder ? undefined : entry.factor, file);
    const expectedIn = FAMILIES[entry.from].channels;
    const expectedOut = decoder ? 3 : FAMILIES[entry.to].channels;
    if (graph.inChannels !== expectedIn || graph.outChannels !== expectedOut) {
      throw new BridgeError(
        'bad_weights',
        `${file} maps ${graph.inChannels} to ${graph.outChannels} channels, but ${entry.name} must map ${expectedIn} to ${expectedOut}`,
      );
    }
    const network = await this.#runtime.load(graph);
    const { size } = await stat(file);
    this.#log.info(`loaded ${entry.name} (${formatBytes(size)}, ${file}) on ${this.device} in ${Math.round(performance.now() - started)} ms`);
    return network;
  }

  /**
   * Loads (downloading if need be) every network the plan names, without running any, so a caller
   * can keep slow model loading out of its compute queue. When several are missing, one error
   * names them all and the one command that fetches them.
   */
  async prepare(plan: Plan): Promise<void> {
    const networks = networksOf(plan);
    const outcomes = await Promise.allSettled(networks.map((entry) => this.#pool.load(entry)));
    const failures = outcomes.flatMap((outcome, i) => (outcome.status === 'rejected' ? [{ entry: networks[i], error: outcome.reason as unknown }] : []));
    if (failures.length === 0) return;
    const missing = failures.filter((f) => f.error instanceof BridgeError && f.error.code === 'model_unavailable');
    if (missing.length < 2 || missing.length !== failures.length) throw failures[0].error;
    const names = missing.map((f) => f.entry.name);
    const files = missing.map((f) => `${this.#source.fileName(f.entry)} (${f.entry.name})`);
    throw new BridgeError(
      'model_unavailable',
      `${missing.length} networks this job needs are missing: ${files.join(', ')}; fetch them all with \`latent-bridge models pull ${names.join(' ')}\`. ` +
        `The first one: ${(missing[0].error as BridgeError).message}`,
    );
  }

  /** Runs the plan's steps on the latent; the result is in the plan's target family and size. */
  async run(plan: Plan, latent: Latent, onStep?: (step: PlanStep) => void): Promise<Latent> {
    if (latent.family !== plan.from || latent.shape[2] !== plan.source.height || latent.shape[3] !== plan.source.width) {
      throw new BridgeError('internal', `a plan for a ${describeSize(plan.source)} ${plan.from} latent was given a ${describeSize(sizeOf(latent))} ${latent.family} one`);
    }
    // Nothing to do: the same values, not a round trip through raw space that may round them.
    if (plan.steps.length === 0) return latent;
    let raw = toRaw(latent);
    for (const step of plan.steps) {
      onStep?.(step);
      raw = await this.#runStep(step, raw);
    }
    return toSpace(raw, latent.space);
  }

  async #runStep(step: PlanStep, raw: Latent): Promise<Latent> {
    if (step.kind === 'resize') {
      const resized = resizeBilinear(raw, step.out.height, step.out.width);
      return makeLatent(raw.family, raw.space, resized.shape, resized.data);
    }
    const out = await this.#pool.use(step.network, (network) => runTiled((tile) => network.run(tile), network.graph, raw));
    if (out.shape[2] !== step.out.height || out.shape[3] !== step.out.width) {
      throw new BridgeError('internal', `${step.network.name} made ${out.shape[2]}x${out.shape[3]} where the plan says ${describeSize(step.out)}`);
    }
    return makeLatent(step.network.to, 'raw', out.shape, out.data);
  }

  /** Plans the job against the limits (src/planner.ts decides), loads what the plan names and runs it. */
  async perform(job: Job, limits: WorkLimits, onStep?: (step: PlanStep) => void): Promise<{ plan: Plan; latent: Latent }> {
    const plan = planJob(job, limits);
    await this.prepare(plan);
    return { plan, latent: await this.run(plan, job.latent, onStep) };
  }

  /** Loads (downloading if need be) the TAESD decoder of a family; `unsupported_direction` when it has none. */
  async prepareDecoder(family: FamilyName): Promise<void> {
    await this.#pool.load(this.#decoderFor(family));
  }

  /**
   * A TAESD picture of the latent: one batch item (or the grid), 8 image pixels per latent pixel.
   * The decoders take the latent as the diffusion model holds it (model space), unlike the others.
   */
  async decodePreview(latent: Latent, options: PreviewOptions = {}): Promise<RgbImage> {
    const decoder = this.#decoderFor(latent.family);
    const model = toModelSpace(latent);
    const input = options.grid ? model : batchItem(model, options.index ?? 0);
    const rgb = await this.#pool.use(decoder, (network) => runTiled((tile) => network.run(tile), network.graph, input));
    return imageFromDecoded(rgb, { grid: options.grid });
  }

  #decoderFor(family: FamilyName): NetworkEntry {
    const decoder = previewDecoderFor(family);
    if (decoder === undefined) throw new BridgeError('unsupported_direction', `no TAESD decoder exists for ${family} latents`);
    return decoder;
  }

  /** Releases every loaded network. */
  close(): Promise<void> {
    return this.#pool.close();
  }
}
