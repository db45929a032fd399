import { FAMILIES, FAMILY_NAMES } from '../families.ts';
import type { Latent } from '../latent.ts';
import type { Plan } from '../planner.ts';
import { OPS, PROTOCOL_VERSION, type InferenceRequest, type ReplyBody } from '../protocol/messages.ts';
import { writePlan } from '../protocol/wire-plan.ts';
import { writeTensor } from '../protocol/wire-tensor.ts';
import type { PreviewDecoding } from './taesd-desk.ts';

/** What the server needs from the engine (src/engine.ts implements it). */
export interface InferenceEngine extends PreviewDecoding {
  prepare(plan: Plan): Promise<void>;
  run(plan: Plan, latent: Latent): Promise<Latent>;
  loadedModels(): string[];
}

export interface ServerIdentity {
  readonly version: string;
  /** The execution device the runtime uses: cuda, webgpu or cpu. */
  readonly device: string;
  /** Why the runtime settled for its device, when it fell back. */
  readonly deviceNote?: string;
}

export function helloReply(identity: ServerIdentity, limits: object): ReplyBody {
  return {
    protocol: PROTOCOL_VERSION,
    server: 'latent-bridge',
    version: identity.version,
    device: identity.device,
    families: FAMILY_NAMES.map((name) => {
      const { label, channels, downscale } = FAMILIES[name];
      return { name, label, channels, downscale };
    }),
    ops: OPS,
    limits,
  };
}

/** Runs a planned inference request and shapes the reply; the result keeps the dtype that was sent. */
export async function runInference(engine: InferenceEngine, request: InferenceRequest, plan: Plan): Promise<ReplyBody> {
  const result = await engine.run(plan, request.job.latent);
  return { latent: writeTensor(request.dtype, result.shape, result.data), plan: writePlan(plan) };
}
