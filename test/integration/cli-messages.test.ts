import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/app/version.js';
import { cli, floatd, floatdVendor, killChildren, requireBuild, serve, vendorCli } from '../support/cli.js';
import { tempDir, until } from '../support/helpers.js';

beforeAll(requireBuild);
afterEach(killChildren);

function claims(token: string): Record<string, unknown> {
  return JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
}

function vendorKeys(dir: string) {
  expect(floatdVendor(['keygen', '--out', join(dir, 'v')]).code).toBe(0);
  return { pub: join(dir, 'v', 'vendor-public.jwk'), priv: join(dir, 'v', 'vendor-private.jwk') };
}

const issue = (priv: string, extra: string[]) => floatdVendor(['issue', '--private-key', priv, '--licensee', 'Acme', '--product', 'cad', '--seats', '3', ...extra]);

/** The same vendor keys and license keys for tests about other commands, made with the CLI in this process (no node to start). */
async function vendorKeysHere(dir: string) {
  expect((await vendorCli(['keygen', '--out', join(dir, 'v')])).code).toBe(0);
  return { pub: join(dir, 'v', 'vendor-public.jwk'), priv: join(dir, 'v', 'vendor-private.jwk') };
}

const issueHere = (priv: string, extra: string[]) => vendorCli(['issue', '--private-key', priv, '--licensee', 'Acme', '--product', 'cad', '--seats', '3', ...extra]);

describe('the command line', () => {
  it('answers --version and --help on every command', async () => {
    expect(await cli(['--version'])).toMatchObject({ code: 0, out: VERSION });
    for (const command of ['serve', 'status', 'log', 'license', 'rules', 'run', 'vendor', 'version']) {
      const r = await cli([command, '--help']);
      expect(r.code, command).toBe(0);
      expect(r.out, command).toMatch(new RegExp(`^floatd ${command}`));
    }
    // For run, --help after "--" belongs to the wrapped command.
    expect((await cli(['run', '--', 'x', '--help'])).err).toMatch(/USAGE: floatd run needs --server/);
  });

  it('vendor issue: a date alone ends the key at the end of that day, impossible and past dates are refused', () => {
    const { priv } = vendorKeys(tempDir());
    const r = issue(priv, ['--expires', '2099-12-31', '--not-before', '2099-01-01']);
    expect(r.code, r.err).toBe(0);
    expect(claims(r.out)).toMatchObject({ exp: Date.parse('2100-01-01T00:00:00Z') / 1000, nbf: Date.parse('2099-01-01T00:00:00Z') / 1000 });
    expect(r.err).toContain('expires at 2100-01-01T00:00:00.000Z (the end of 2099-12-31 UTC)');
    const exact = issue(priv, ['--expires', '2099-06-30T12:00:00Z']);
    expect(claims(exact.out)['exp']).toBe(Date.parse('2099-06-30T12:00:00Z') / 1000);
    expect(issue(priv, ['--expires', '2027-02-30'])).toMatchObject({ code: 2, err: expect.stringContaining('2027-02-30 is not a date on the calendar') });
    expect(issue(priv, ['--expires', '2020-01-01'])).toMatchObject({ code: 2, err: expect.stringContaining('is in the past') });
    expect(issue(priv, ['--expires', 'next year'])).toMatchObject({ code: 2, err: expect.stringContaining('--expires must be a date') });
    expect(issue(priv, ['--expires', '2099-01-01', '--not-before', '2099-02-01'])).toMatchObject({ code: 2, err: expect.stringContaining('must be later than --not-before') });
  });

  it('license add takes a renewal key whose not-before is ahead as pending; remove takes a unique id prefix', async () => {
    const dir = tempDir();
    const { pub, priv } = await vendorKeysHere(dir);
    const data = join(dir, 'data');
    const server = await serve(['--data-dir', data, '--vendor-public-key', pub]);
    const renewal = (await issueHere(priv, ['--not-before', '2099-01-01'])).out;
    const added = await cli(['license', 'add', renewal, '--data-dir', data]);
    expect(added.code, added.err).toBe(0);
    expect(added.out).toContain('pending: grants from 2099-01-01T00:00:00.000Z');
    const id = claims(renewal)['jti'] as string;
    expect((await cli(['license', 'list', '--data-dir', data])).out).toContain('pending until 2099-01-01T00:00:00.000Z');
    const status = JSON.parse((await cli(['status', '--json', '--data-dir', data])).out);
    expect(status).toMatchObject({ mode: 'evaluation', keys: [{ id, state: 'not-yet-valid' }] });
    expect(await cli(['license', 'remove', id.slice(0, 6), '--data-dir', data])).toMatchObject({ code: 0, out: `removed license key ${id}` });
    expect(await cli(['license', 'remove', 'zzz', '--data-dir', data])).toMatchObject({ code: 1, err: expect.stringContaining('LICENSE_KEY_NOT_FOUND') });
    server.child.kill('SIGTERM');
  });

  it('status shows days left per key; the log table has a header', async () => {
    const dir = tempDir();
    const { pub, priv } = await vendorKeysHere(dir);
    const data = join(dir, 'data');
    const server = await serve(['--data-dir', data, '--vendor-public-key', pub]);
    const expires = new Date(Date.now() + 10 * 86_400_000).toISOString().slice(0, 10);
    expect((await cli(['license', 'add', (await issueHere(priv, ['--expires', expires, '--feature', 'export'])).out, '--data-dir', data])).code).toBe(0);
    const text = (await cli(['status', '--data-dir', data])).out;
    expect(text).toMatch(/TIME LEFT\s+STATE\s+FEATURES/);
    expect(text).toMatch(/\s(10|11) days\s+valid\s+export/);
    // A key that expires in minutes shows hours and minutes, not "1" day: in status, license list, the warning.
    const soon = (await issueHere(priv, ['--product', 'viewer', '--expires', new Date(Date.now() + (5 * 60 + 12) * 60_000 - 30_000).toISOString()])).out;
    expect((await cli(['license', 'add', soon, '--data-dir', data])).code).toBe(0);
    const soonId = claims(soon)['jti'] as string;
    expect((await cli(['status', '--data-dir', data])).out).toMatch(new RegExp(`${soonId}.*\\s5h 12m\\s+valid`));
    expect(JSON.parse((await cli(['status', '--json', '--data-dir', data])).out).keys).toContainEqual(expect.objectContaining({ id: soonId, daysLeft: 0, timeLeft: '5h 12m' }));
    expect((await cli(['license', 'list', '--data-dir', data])).out).toMatch(new RegExp(`${soonId}.*\\s5h 12m\\s+valid`));
    await until(() => server.log().includes(`license key ${soonId} (viewer) expires in 5h 12m`), 'the expiry warning');
    const log = (await cli(['log', '--data-dir', data])).out.split('\n');
    expect(log[0]).toMatch(/^TIME\s+EVENT\s+PRODUCT\s+WHO\s+SEATS\s+LEASE\s+REMOTE\s+CODE\s+BY\s+MESSAGE$/);
    expect(log.some((l) => / key-added /.test(l))).toBe(true);
    server.child.kill('SIGTERM');
  });

  it('rules explain takes the groups file, as simulate does', async () => {
    const dir = tempDir();
    const rules = join(dir, 'rules.clt');
    const groups = join(dir, 'groups');
    writeFileSync(rules, 'CLT cad-team connection_limit=3\nCLT ALL connection_limit=1\n');
    writeFileSync(groups, 'cad-team.users = alice, bob\n');
    const r = await cli(['rules', 'explain', rules, '--user', 'alice', '--groups', groups, '--json']);
    expect(r.code, r.err).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ matched: 'group', countLimit: 3 });
    expect(JSON.parse((await cli(['rules', 'explain', rules, '--user', 'carol', '--groups', groups, '--json'])).out)).toMatchObject({ matched: 'default', countLimit: 1 });
  });
});
