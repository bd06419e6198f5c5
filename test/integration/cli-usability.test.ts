import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { cli, floatd, killChildren, requireBuild, vendorCli } from '../support/cli.js';
import { tempDir, testConfig } from '../support/helpers.js';
import { leaseOf, prepareDataDir, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
afterEach(killChildren);

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

describe('the command line for people', () => {
  it('an unknown command gets one line, a guess when one is close, and where the list is (exit 2)', async () => {
    const typo = await cli(['stauts']);
    expect(typo.code).toBe(2);
    expect(typo.out).toBe('');
    expect(typo.err).toBe('floatd: unknown command "stauts"; did you mean "status"?\nRun floatd --help for the list of commands.');
    const far = await cli(['frobnicate']);
    expect(far).toMatchObject({ code: 2, err: 'floatd: unknown command "frobnicate"\nRun floatd --help for the list of commands.' });
  });

  it('an unknown flag gets the closest flag of that command', async () => {
    const r = await cli(['log', '--untill', 'now']);
    expect(r.code).toBe(2);
    expect(r.err).toBe(`floatd log: USAGE: Unknown option '--untill'; did you mean "--until"?`);
  });

  it('time flags take now, as well as dates and spans ago', async () => {
    server = await startServer({ seats: 2 });
    const alice = await server.connect('alice');
    leaseOf(await alice.request('acquire', { product: 'cad' }));
    const dataDir = server.config.dataDir;
    const log = await cli(['log', '--json', '--since', '1h', '--until', 'now', '--data-dir', dataDir]);
    expect(log.err).toBe('');
    expect(log.code).toBe(0);
    expect(log.out.split('\n').map((l) => (JSON.parse(l) as { event: string }).event)).toContain('granted');
    // until is exclusive: nothing is recorded after now, so "--since now" finds nothing yet.
    expect(await cli(['log', '--json', '--since', 'now', '--data-dir', dataDir])).toMatchObject({ code: 0, out: '' });
    const report = await cli(['report', 'usage', '--json', '--from', '2h', '--to', 'now', '--data-dir', dataDir]);
    expect(report.err).toBe('');
    expect(report.code).toBe(0);
    expect((JSON.parse(report.out) as { total: { grants: number } }).total.grants).toBe(1);
    const bad = await cli(['log', '--until', 'tomorrow', '--data-dir', dataDir]);
    expect(bad.code).toBe(2);
    expect(bad.err).toContain('--until must be an ISO date/time (2026-11-21T09:00Z, 2026-11-21T09:00 local, or a date alone: 2026-11-21), now, or a span ago');
  });
});

describe('license add on a server that trusts no vendor key', () => {
  it('says NO_VENDOR_KEYS and exactly what to do: restart floatd serve with --vendor-public-key (or the setting), then add again', async () => {
    const dir = tempDir();
    expect((await vendorCli(['keygen', '--out', join(dir, 'v')])).code).toBe(0);
    const key = (await vendorCli(['issue', '--private-key', join(dir, 'v', 'vendor-private.jwk'), '--licensee', 'Acme', '--product', 'cad', '--seats', '3'])).out;
    const dataDir = join(dir, 'data');
    await prepareDataDir(testConfig({}, dataDir));
    const r = await cli(['license', 'add', key, '--data-dir', dataDir]);
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/^floatd license: NO_VENDOR_KEYS: this server trusts no vendor public key/);
    expect(r.err).toContain('restart the server with the public key the vendor gave you (floatd serve --vendor-public-key FILE, or "vendorPublicKeys": ["FILE"] in its config file, or FLOATD_VENDOR_PUBLIC_KEYS=FILE)');
    expect(r.err).toContain('then run floatd license add again');
  });
});
