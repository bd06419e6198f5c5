import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../support/fake-clock.js';
import { tempDir } from '../support/helpers.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

function rulesFile(text: string, dir = tempDir()): string {
  const file = join(dir, 'rules.clt');
  writeFileSync(file, text);
  return file;
}

async function withRules(text: string, extra: Record<string, unknown> = {}, clock?: FakeClock): Promise<TestServer> {
  const server = await startServer({ seats: 10, clock, flags: { 'rules.file': rulesFile(text), ...extra } });
  servers.push(server);
  return server;
}

describe('CLT rules on a real server', () => {
  it('denies a third lease to a user capped at 2 over TCP, logs the denial, and grants after a release', async () => {
    const server = await withRules('CLT alice connection_limit=2\n');
    const a1 = await server.connect('alice', 'a1');
    const a2 = await server.connect('alice', 'a2');
    const a3 = await server.connect('alice', 'a3');
    const first = leaseOf(await a1.request('acquire', {}));
    leaseOf(await a2.request('acquire', {}));
    const denied = errorOf(await a3.request('acquire', {}));
    expect(denied).toMatchObject({ code: 'RULE_DENIED', reason: 'count', message: 'user alice breaks lease count limit 2 on listener tcp' });
    // Another user is not affected, and the denial took no seat.
    leaseOf(await (await server.connect('bob', 'b1')).request('acquire', {}));
    expect((await server.floatd.status()).leasesHeld).toBe(3);

    const logged = await server.floatd.store.queryEvents({ events: ['denied'] });
    expect(logged).toHaveLength(1);
    expect(logged[0]).toMatchObject({ user: 'alice', instance: 'a3', listener: 'tcp', code: 'RULE_DENIED', reason: 'count', message: denied.message });

    expect(await a1.request('release', { lease: first.id })).toMatchObject({ ok: true });
    leaseOf(await a3.request('acquire', {}));
    // Renewing and re-acquiring held leases are not new acquisitions.
    leaseOf(await a3.request('acquire', {}));
  });

  it('keeps counting across a restart', async () => {
    const file = rulesFile('CLT alice connection_limit=1\n');
    const first = await startServer({ seats: 5, flags: { 'rules.file': file } });
    const dataDir = first.config.dataDir;
    leaseOf(await (await first.connect('alice', 'a1')).request('acquire', {}));
    await first.stop();
    const second = await startServer({ flags: { 'rules.file': file }, dataDir, vendor: first.vendor });
    servers.push(second);
    expect(errorOf(await (await second.connect('alice', 'a2')).request('acquire', {}))).toMatchObject({ code: 'RULE_DENIED', reason: 'count' });
  });

  it('limits acquisition frequency over a sliding window of accepted acquisitions', async () => {
    const clock = new FakeClock(Date.parse('2026-11-21T09:00:00Z'));
    const server = await withRules('CLT alice connection_frequency_limit=2/1m\n', {}, clock);
    const t = await server.connect('alice', 'a1');
    const acquireRelease = async () => {
      const reply = await t.request('acquire', {});
      if (reply.ok) await t.request('release', { lease: leaseOf(reply).id });
      return reply;
    };
    leaseOf(await acquireRelease());
    clock.advance(10_000);
    leaseOf(await acquireRelease());
    clock.advance(10_000);
    expect(errorOf(await acquireRelease())).toMatchObject({
      code: 'RULE_DENIED',
      reason: 'frequency',
      message: 'user alice breaks acquisition frequency limit 2 per 60 s on listener tcp',
    });
    clock.advance(40_000); // the first acquisition is now exactly 60 s old: out of the window
    leaseOf(await acquireRelease());
  });

  it('blocks everyone but a group from the groups file, and logs each grant with log_all', async () => {
    const dir = tempDir();
    const groups = join(dir, 'groups');
    writeFileSync(groups, 'eng.users = alice, bob\n');
    const server = await withRules('CONFIG log_all=true\nCLT ALL BLOCK\nCLT eng connection_limit=1\n', { 'rules.groupsFile': groups });
    leaseOf(await (await server.connect('alice', 'a1')).request('acquire', {}));
    expect(errorOf(await (await server.connect('alice', 'a2')).request('acquire', {}))).toMatchObject({ reason: 'count' });
    expect(errorOf(await (await server.connect('carol', 'c1')).request('acquire', {}))).toMatchObject({
      code: 'RULE_DENIED',
      reason: 'blocked',
      message: 'user carol is blocked on listener tcp',
    });
    const granted = await server.floatd.store.queryEvents({ events: ['granted'] });
    expect(granted.map((e) => e.message)).toEqual(['user alice now holds 1 lease(s) on listener tcp']);
  });

  it('applies inline rules from the config', async () => {
    const server = await startServer({ flags: { 'rules.inline': ['CLT ALL connection_limit=0'] } });
    servers.push(server);
    expect(errorOf(await (await server.connect('alice')).request('acquire', {}))).toMatchObject({ reason: 'count' });
  });

  it('reloads rules: a good file applies, a broken one is refused and the old rules stay', async () => {
    const dir = tempDir();
    const file = rulesFile('CLT alice connection_limit=1\n', dir);
    const server = await withRules('', { 'rules.file': file });
    const a1 = await server.connect('alice', 'a1');
    const a2 = await server.connect('alice', 'a2');
    const a3 = await server.connect('alice', 'a3');
    leaseOf(await a1.request('acquire', {}));
    expect(errorOf(await a2.request('acquire', {}))).toMatchObject({ reason: 'count' });

    writeFileSync(file, 'CLT alice connection_limit=2\n');
    expect(await server.floatd.reloadRules()).toMatchObject({ ok: true });
    expect((await server.floatd.status()).rules).toBe(`1 CLT rule(s) from ${file}`);
    leaseOf(await a2.request('acquire', {}));

    writeFileSync(file, 'CLT alice connection_limit=5\nCLT bob limit=3\n');
    const refused = await server.floatd.reloadRules();
    expect(refused).toMatchObject({ ok: false, errors: [{ file, line: 2, kind: 'unknown-property' }] });
    // Still the limit of 2: the broken file changed nothing.
    expect(errorOf(await a3.request('acquire', {}))).toMatchObject({ reason: 'count', message: expect.stringContaining('limit 2') });

    const log = await server.floatd.store.queryEvents({ events: ['rules-reloaded', 'rules-rejected'] });
    expect(log.map((e) => e.event)).toEqual(['rules-reloaded', 'rules-reloaded', 'rules-rejected']);
    expect(log[2]!.message).toContain(`${file}:2: unknown-property`);
  });

  it('refuses to start with a broken rules file, listing the errors', async () => {
    const file = rulesFile('CLT alice connection_limit=x\n\nCLT "bob\n');
    await expect(startServer({ flags: { 'rules.file': file } })).rejects.toMatchObject({
      code: 'RULES_INVALID',
      message: expect.stringMatching(/:1: invalid-number.*\n.*:3: unterminated-quote/s),
    });
  });
});
