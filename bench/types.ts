/** One measured case: our time next to a baseline's, measured side by side in the same run. */
export interface BenchResult {
  readonly name: string;
  /** Median milliseconds of what we ship. */
  readonly ms: number;
  /** Median milliseconds of the baseline it is compared with. */
  readonly baseline_ms: number;
  /** ms / baseline_ms. */
  readonly ratio: number;
  /** The target this ratio (or ms) is held to, in words, e.g. "ratio <= 0.6". */
  readonly target: string;
  /** Whether the target is met. */
  readonly ok: boolean;
  /** What `ms` and `baseline_ms` hold when it is not milliseconds, e.g. "MiB". */
  readonly unit?: string;
}

export interface BenchOptions {
  /** Rounds of interleaved measurements. */
  readonly rounds: number;
  /** Whether a case is asked for; a group may skip measuring the others (run.ts drops their results). */
  readonly wanted: (caseName: string) => boolean;
}

/** A group of benchmark cases contributed by one part of the project. */
export type BenchGroup = (options: BenchOptions) => Promise<BenchResult[]>;
