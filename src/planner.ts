import { BridgeError } from './errors.ts';
import type { Tensor4 } from './tensor.ts';
import type { FamilyName } from './families.ts';
import { hasUpscaler, interposerSpec, upscalerSpecs, type ModelSpec } from './store/registry.ts';

/** A latent's spatial size, in latent pixels. */
export interface TargetSize {
  readonly height: number;
  readonly width: number;
}

/** The spatial size of an NCHW tensor. */
export function sizeOf(tensor: Tensor4): TargetSize {
  return { height: tensor.shape[2], width: tensor.shape[3] };
}

/** PyTorch's `nn.Upsample` output size: floor(in * factor). */
export function scaledSize(size: TargetSize, factor: number): TargetSize {
  return { height: Math.floor(size.height * factor), width: Math.floor(size.width * factor) };
}

/**
 * The chain of trained upscalers that reaches at least `target`: the smallest trained factor
 * that gets there, after as many of the largest as needed. The caller resizes the last output
 * down to the exact target, so at exactly a trained factor nothing but the network runs.
 */
export function planUpscalers(family: FamilyName, from: TargetSize, target: TargetSize): ModelSpec[] {
  const specs = [...upscalerSpecs(family)].sort((a, b) => a.factor - b.factor);
  const chain: ModelSpec[] = [];
  let size = from;
  while (size.height < target.height || size.width < target.width) {
    const reaches = (spec: ModelSpec) => {
      const next = scaledSize(size, spec.factor);
      return next.height >= target.height && next.width >= target.width;
    };
    const spec = specs.find(reaches) ?? specs[specs.length - 1];
    chain.push(spec);
    size = scaledSize(size, spec.factor);
  }
  return chain;
}

/** How a hires request gets from the first-pass latent to the target family and size. */
export type HiresStep =
  | { readonly kind: 'interpose'; readonly spec: ModelSpec }
  | { readonly kind: 'upscale'; readonly family: FamilyName; readonly target: TargetSize }
  | { readonly kind: 'resize'; readonly target: TargetSize };

/**
 * Orders conversion and upscaling so the interposer (the costlier network) runs at the lower
 * resolution whenever an upscaler exists after it: interpose first when the target family has
 * an upscaler, upscale first when only the source family has one, plain resize when neither.
 */
export function planHires(from: FamilyName, to: FamilyName, source: TargetSize, target: TargetSize): { steps: HiresStep[]; warnings: string[] } {
  const steps: HiresStep[] = [];
  let size = source;
  if (from !== to) {
    const spec = interposerSpec(from, to);
    if (!hasUpscaler(to) && hasUpscaler(from)) {
      const before = scaledSize(target, 1 / spec.factor);
      if (before.height > size.height || before.width > size.width) {
        steps.push({ kind: 'upscale', family: from, target: before });
        size = before;
      }
    }
    steps.push({ kind: 'interpose', spec });
    size = scaledSize(size, spec.factor);
  }
  if (size.height === target.height && size.width === target.width) return { steps, warnings: [] };
  if (hasUpscaler(to)) return { steps: [...steps, { kind: 'upscale', family: to, target }], warnings: [] };
  const names = from === to ? to : `${from} or ${to}`;
  return { steps: [...steps, { kind: 'resize', target }], warnings: [`no neural upscaler exists for ${names} latents; resized bilinearly`] };
}

/** Every network a hires plan runs, in order, following the size through the steps. */
export function networksOf(steps: readonly HiresStep[], source: TargetSize): ModelSpec[] {
  const specs: ModelSpec[] = [];
  let size = source;
  for (const step of steps) {
    if (step.kind === 'interpose') {
      specs.push(step.spec);
      size = scaledSize(size, step.spec.factor);
    } else {
      if (step.kind === 'upscale') specs.push(...planUpscalers(step.family, size, step.target));
      size = step.target;
    }
  }
  return specs;
}

/** Largest latent side accepted as a target: 16384 pixels at 8 pixels per latent pixel. */
export const MAX_TARGET_SIDE = 2048;

export function checkTargetSize(target: TargetSize): void {
  for (const [axis, value] of Object.entries(target)) {
    if (!Number.isSafeInteger(value) || value < 1) throw new BridgeError('bad_request', `target ${axis} must be a positive integer, got ${value}`);
    if (value > MAX_TARGET_SIDE) throw new BridgeError('too_large', `target ${axis} ${value} exceeds the limit of ${MAX_TARGET_SIDE} latent pixels`);
  }
}
