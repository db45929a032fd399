import { hasUpscaler, interposerFor, upscalersFor, type LatentNetwork } from './catalogue.ts';
import { BridgeError } from './errors.ts';
import { FAMILIES, type FamilyName } from './families.ts';
import type { Latent } from './latent.ts';
import { checkElements, checkFinite, checkTargetSize, type WorkLimits } from './limits.ts';
import { describeSize, scaledSize, sizeOf, type Size } from './tensor.ts';

/** A piece of work asked of the engine, by a client or on the command line. */
export type Job =
  | { readonly op: 'upscale'; readonly latent: Latent; readonly target: Size }
  | { readonly op: 'interpose'; readonly latent: Latent; readonly to: FamilyName }
  | { readonly op: 'hires'; readonly latent: Latent; readonly to: FamilyName; readonly target: Size };

/** One step of a plan: a network run, or the exact bilinear resize that ends at the requested size. */
export type PlanStep =
  | { readonly kind: 'network'; readonly network: LatentNetwork; readonly in: Size; readonly out: Size }
  | { readonly kind: 'resize'; readonly family: FamilyName; readonly in: Size; readonly out: Size };

export interface PlanWarning {
  /** `no_upscaler`: the size was reached by a bilinear resize alone. */
  readonly code: 'no_upscaler';
  readonly message: string;
}

/**
 * How a job is done, decided once: the engine loads exactly the networks named here and runs the
 * steps in order, and the reply reports the plan as it is (docs/protocol.md, "Plans").
 */
export interface Plan {
  readonly from: FamilyName;
  readonly to: FamilyName;
  readonly source: Size;
  readonly target: Size;
  readonly steps: readonly PlanStep[];
  readonly warnings: readonly PlanWarning[];
}

/** One step in words, for logs and the command line: `upscaler-v1-x2.0 64x64 -> 128x128`. */
export function describeStep(step: PlanStep): string {
  const name = step.kind === 'network' ? step.network.name : 'bilinear';
  return `${name} ${describeSize(step.in)} -> ${describeSize(step.out)}`;
}

/** The whole plan in words; `unchanged` when there is nothing to do. */
export function describePlan(plan: Plan): string {
  return plan.steps.map(describeStep).join('; ') || 'unchanged';
}

/** Every network a plan runs, each once, in the order of first use. */
export function networksOf(plan: Plan): LatentNetwork[] {
  const networks = new Map<string, LatentNetwork>();
  for (const step of plan.steps) if (step.kind === 'network') networks.set(step.network.name, step.network);
  return [...networks.values()];
}

function sameSize(a: Size, b: Size): boolean {
  return a.height === b.height && a.width === b.width;
}

/**
 * More steps than any plan within the limits needs (a chain doubles at least once a step), kept as
 * a hard stop so that no input, whatever the size arithmetic does, can keep the planner looping.
 */
const MAX_STEPS = 32;

/** Builds the steps one after the other, following the size; refuses a step that leaves nothing. */
class StepList {
  readonly steps: PlanStep[] = [];
  size: Size;

  constructor(source: Size) {
    this.size = source;
  }

  run(network: LatentNetwork): void {
    const out = scaledSize(this.size, network.factor);
    if (out.height < 1 || out.width < 1) {
      throw new BridgeError(
        'bad_request',
        `a ${describeSize(this.size)} ${network.from} latent is too small: ${network.name} scales it by ${network.factor} to ${describeSize(out)}`,
      );
    }
    if (this.steps.length >= MAX_STEPS) throw new BridgeError('too_large', `reaching this size would take more than ${MAX_STEPS} network runs`);
    this.steps.push({ kind: 'network', network, in: this.size, out });
    this.size = out;
  }

  /**
   * The chain of trained upscalers that reaches at least `target`: the smallest trained factor that
   * gets there, after as many of the largest as needed. Each step grows a side of at least one
   * pixel by at least one (floor(n * 2) > n), so the chain ends within log2(target) steps.
   */
  upscale(family: FamilyName, target: Size): void {
    const upscalers = upscalersFor(family);
    while (this.size.height < target.height || this.size.width < target.width) {
      const reaches = (network: LatentNetwork): boolean => {
        const next = scaledSize(this.size, network.factor);
        return next.height >= target.height && next.width >= target.width;
      };
      this.run(upscalers.find(reaches) ?? upscalers[upscalers.length - 1]);
    }
  }

  /** The exact resize to `target`, unless the size is already right. */
  resize(family: FamilyName, target: Size): void {
    if (sameSize(this.size, target)) return;
    this.steps.push({ kind: 'resize', family, in: this.size, out: target });
    this.size = target;
  }
}

function noUpscalerWarning(from: FamilyName, to: FamilyName): PlanWarning {
  const names = from === to ? to : `${from} or ${to}`;
  return { code: 'no_upscaler', message: `no neural upscaler exists for ${names} latents; resized bilinearly` };
}

/**
 * Orders conversion and upscaling so the interposer (the costlier network) runs at the lower
 * resolution whenever an upscaler exists after it: interpose first when the target family has
 * an upscaler, upscale first when only the source family has one, plain resize when neither.
 */
function hiresSteps(from: FamilyName, to: FamilyName, source: Size, target: Size): { steps: PlanStep[]; warnings: PlanWarning[] } {
  const list = new StepList(source);
  if (from !== to) {
    const interposer = interposerFor(from, to);
    if (!hasUpscaler(to) && hasUpscaler(from)) {
      const before = scaledSize(target, 1 / interposer.factor);
      if (before.height > list.size.height || before.width > list.size.width) {
        list.upscale(from, before);
        list.resize(from, before);
      }
    }
    list.run(interposer);
  }
  if (sameSize(list.size, target)) return { steps: list.steps, warnings: [] };
  const enlarges = target.height > list.size.height || target.width > list.size.width;
  if (hasUpscaler(to)) list.upscale(to, target);
  list.resize(to, target);
  const warnings = enlarges && !hasUpscaler(to) ? [noUpscalerWarning(from, to)] : [];
  return { steps: list.steps, warnings };
}

/**
 * What a step inside a plan may build: a chain of trained factors overshoots the target before its
 * final resize (by less than 2x a side), and an interposer into 16 channels quadruples a 4-channel
 * latent, so a step's result may hold up to four times what a request or result may.
 */
function checkIntermediates(batch: number, steps: readonly PlanStep[], limits: WorkLimits): void {
  for (const step of steps) {
    const family = step.kind === 'network' ? step.network.to : step.family;
    const elements = batch * FAMILIES[family].channels * step.out.height * step.out.width;
    if (elements > 4 * limits.maxElements) {
      throw new BridgeError(
        'too_large',
        `a step of this plan would build ${elements} elements (${describeSize(step.out)} latent pixels), beyond four times the limit of ${limits.maxElements} (--max-elements)`,
      );
    }
  }
}

/**
 * Decides whether a job is accepted and how it runs: the one place where every entry point's
 * requests are checked against the limits. Throws `bad_request`, `bad_tensor`, `too_large` or
 * `unsupported_direction`; otherwise the plan has a bounded number of steps, each of at least
 * one latent pixel a side, ending exactly at the requested family and size.
 */
export function planJob(job: Job, limits: WorkLimits): Plan {
  const { latent } = job;
  const source = sizeOf(latent);
  const from = latent.family;
  const to = job.op === 'upscale' ? from : job.to;
  const target = job.op === 'interpose' ? source : job.target;
  checkElements('the latent', latent.shape, limits);
  if (job.op !== 'interpose') checkTargetSize(target, limits);
  checkElements('the result', [latent.shape[0], FAMILIES[to].channels, target.height, target.width], limits);
  let planned: { steps: PlanStep[]; warnings: PlanWarning[] };
  switch (job.op) {
    case 'upscale': {
      const enlarges = target.height > source.height || target.width > source.width;
      if (enlarges && !hasUpscaler(from)) {
        throw new BridgeError('unsupported_direction', `no neural upscaler exists for ${from} latents (city96's upscaler v2.1 covers v1 and xl)`);
      }
      planned = hiresSteps(from, from, source, target);
      break;
    }
    case 'interpose': {
      const list = new StepList(source);
      if (from !== to) list.run(interposerFor(from, to));
      planned = { steps: list.steps, warnings: [] };
      break;
    }
    case 'hires':
      planned = hiresSteps(from, to, source, target);
      break;
  }
  checkIntermediates(latent.shape[0], planned.steps, limits);
  checkFinite('the latent', latent.data, limits);
  const last = planned.steps.at(-1)?.out ?? source;
  return { from, to, source, target: last, steps: planned.steps, warnings: planned.warnings };
}
