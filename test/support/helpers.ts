import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from './fake-clock.js';
import { loadConfig, type Config } from '../../src/config/config.js';
import type { ClientIdentity } from '../../src/domain/lease.js';
import type { LicenseKey } from '../../src/domain/license.js';

const dirs: string[] = [];

/** A temp directory removed after the test. */
export function tempDir(prefix = 'floatd-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

let evaluationState: string | null = null;

/**
 * The evaluation record's folder for the running test (evaluation.stateDir,
 * FLOATD_EVALUATION_STATE for the CLI): one per test, so tests never share an
 * evaluation nor touch the real home's record.
 */
export function evaluationStateDir(): string {
  evaluationState ??= tempDir('floatd-evaluation-');
  return evaluationState;
}

/** Forgets the test's evaluation folder and removes its temp folders: after every test (test/support/setup.ts). */
export function cleanUpAfterTest(): void {
  evaluationState = null;
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Config built through the same validation as production, with overrides. */
export function testConfig(flags: Record<string, unknown> = {}, dataDir = tempDir()): Config {
  return loadConfig({
    env: {},
    cwd: dataDir,
    flags: { dataDir, listeners: ['127.0.0.1:0'], 'http.listen': [], 'log.level': 'silent', 'evaluation.stateDir': evaluationStateDir(), ...flags },
  });
}

export function client(user: string, instance = `${user}-1`, extra: Partial<ClientIdentity> = {}): ClientIdentity {
  return { user, instance, host: `${user}-host`, remote: '127.0.0.1', listener: 'tcp', groups: [], ...extra };
}

export function licenseKey(overrides: Partial<LicenseKey> = {}): LicenseKey {
  return {
    id: 'key-1',
    licensee: 'Acme',
    product: 'cad',
    seats: 2,
    issuedAt: null,
    notBefore: null,
    expiresAt: null,
    maxLeaseSeconds: null,
    features: [],
    ...overrides,
  };
}

export { FakeClock };

/** Polls `check` (every 25 ms, for up to 5 s) on real time, for things another process does. */
export async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`timed out waiting for ${what}`);
}
