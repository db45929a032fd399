import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Each file runs in its own process; the machine has 2 cores, so keep parallelism low.
    pool: 'forks',
    maxWorkers: 2,
  },
});
