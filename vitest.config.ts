import { defineConfig } from 'vitest/config';

/**
 * Three projects: `unit` (no sockets, no processes: `npm run test:unit`, seconds),
 * `integration` (real servers on port 0, the CLI, Chromium) and `faults` (storage
 * faults, slow readers, kill -9). `npm test` runs all three.
 *
 * Most integration files spend their time waiting (on servers, child processes and
 * timers), not computing, so they run three at a time even on two cores; vitest's
 * default (cores - 1) would run them one by one. The fault tests measure timings
 * and load the machine on purpose: they run after the others, two at a time.
 */
export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    maxWorkers: 3,
    setupFiles: ['test/support/setup.ts'],
    projects: [
      // Unit files are pure and share one module graph per worker: importing it once per file cost more than the tests.
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'], isolate: false } },
      // Integration files share their modules too: importing the server's graph once per file cost about a second each.
      { extends: true, test: { name: 'integration', include: ['test/integration/**/*.test.ts'], isolate: false } },
      { extends: true, test: { name: 'faults', include: ['test/faults/**/*.test.ts'], maxWorkers: 2, sequence: { groupOrder: 1 } } },
    ],
  },
});
