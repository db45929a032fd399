import { FAMILY_NAMES, type FamilyName } from '../families.ts';
import type { Latent } from '../latent.ts';
import { sizeOf } from '../planner.ts';
import { OPS, PROTOCOL_VERSION, type Request, type ReplyBody, type Size } from '../protocol/messages.ts';
import { writeTensor } from '../protocol/wire-tensor.ts';
import type { FloatDtype } from '../tensor.ts';

/** What the server needs from the engine (src/engine.ts implements it). */
export interface InferenceEngine {
  upscale(latent: Latent, target: Size): Promise<{ latent: Latent; plan: string[] }>;
  interpose(latent: Latent, to: FamilyName): Promise<Latent>;
  hires(latent: Latent, to: FamilyName, target: Size): Promise<{ latent: Latent; plan: string[]; warnings: string[] }>;
  prepare(from: FamilyName, to: FamilyName, source: Size, target?: Size): Promise<void>;
  loadedModels(): string[];
}

export interface ServerIdentity {
  readonly version: string;
  /** The execution device the runtime uses: cuda, webgpu or cpu. */
  readonly device: string;
  /** Why the runtime settled for its device, when it fell back. */
  readonly deviceNote?: string;
}

type InferenceRequest = Extract<Request, { op: 'upscale' | 'interpose' | 'hires' }>;

function tensorOf(dtype: FloatDtype, latent: Latent) {
  return writeTensor(dtype, latent.shape, latent.data);
}

export function helloReply(identity: ServerIdentity, limits: object): ReplyBody {
  return {
    protocol: PROTOCOL_VERSION,
    server: 'latent-bridge',
    version: identity.version,
    device: identity.device,
    families: FAMILY_NAMES,
    ops: OPS,
    limits,
  };
}

/**
 * Loads the networks a request needs before it joins the compute queue, so a first use that
 * downloads weights never holds up other clients' requests.
 */
export function prepareInference(engine: InferenceEngine, request: InferenceRequest): Promise<void> {
  const { latent } = request.input;
  const source = sizeOf(latent);
  switch (request.op) {
    case 'upscale':
      return engine.prepare(latent.family, latent.family, source, request.target);
    case 'interpose':
      return engine.prepare(latent.family, request.to, source);
    case 'hires':
      return engine.prepare(latent.family, request.to, source, request.target);
  }
}

/** Runs one inference request on the engine and shapes the reply; the result keeps the dtype that was sent. */
export async function runInference(engine: InferenceEngine, request: InferenceRequest): Promise<ReplyBody> {
  const { latent, dtype } = request.input;
  switch (request.op) {
    case 'upscale': {
      const result = await engine.upscale(latent, request.target);
      return { latent: tensorOf(dtype, result.latent), plan: result.plan };
    }
    case 'interpose':
      return { latent: tensorOf(dtype, await engine.interpose(latent, request.to)) };
    case 'hires': {
      const result = await engine.hires(latent, request.to, request.target);
      return { latent: tensorOf(dtype, result.latent), plan: result.plan, warnings: result.warnings };
    }
  }
}
