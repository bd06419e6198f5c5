import { defineConfig } from 'vitest/config';

/**
 * Three projects: `unit` (no sockets, no processes: `npm run test:unit`, seconds),
 * `integration` (real servers on port 0, the CLI, Chromium) and `faults` (storage
 * faults, slow readers, kill -9). `npm test` runs all three.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'] } },
      { extends: true, test: { name: 'faults', include: ['test/faults/**/*.test.ts'] } },
    ],
  },
});
