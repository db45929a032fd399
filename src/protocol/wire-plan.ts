import type { LatentNetwork } from '../catalogue.ts';
import type { FamilyName } from '../families.ts';
import type { Plan, PlanStep } from '../planner.ts';
import type { Size } from '../tensor.ts';

/** What a step does, as clients read it. */
export type WireStepKind = 'interpose' | 'upscale' | 'resize';

/** A plan as it travels in replies (docs/protocol.md, "Plans"): data, not sentences. */
export interface WirePlan {
  readonly from: FamilyName;
  readonly to: FamilyName;
  readonly source: readonly [number, number];
  readonly target: readonly [number, number];
  readonly steps: readonly {
    readonly kind: WireStepKind;
    /** The network that ran, nil for a resize. */
    readonly network: string | null;
    readonly from: FamilyName;
    readonly to: FamilyName;
    readonly in: readonly [number, number];
    readonly out: readonly [number, number];
  }[];
  readonly warnings: readonly { readonly code: string; readonly message: string }[];
}

const STEP_KINDS: Readonly<Record<LatentNetwork['kind'], WireStepKind>> = { interposer: 'interpose', upscaler: 'upscale' };

function pair(size: Size): [number, number] {
  return [size.height, size.width];
}

function writeStep(step: PlanStep): WirePlan['steps'][number] {
  if (step.kind === 'resize') return { kind: 'resize', network: null, from: step.family, to: step.family, in: pair(step.in), out: pair(step.out) };
  const { network } = step;
  return { kind: STEP_KINDS[network.kind], network: network.name, from: network.from, to: network.to, in: pair(step.in), out: pair(step.out) };
}

export function writePlan(plan: Plan): WirePlan {
  return {
    from: plan.from,
    to: plan.to,
    source: pair(plan.source),
    target: pair(plan.target),
    steps: plan.steps.map(writeStep),
    warnings: plan.warnings.map(({ code, message }) => ({ code, message })),
  };
}
