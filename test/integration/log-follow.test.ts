import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LogTable } from '../../src/cli/log-format.js';
import type { LeaseEvent } from '../../src/domain/events.js';
import { exited, killChildren, requireBuild, spawnFloatd } from '../support/cli.js';
import { until } from '../support/helpers.js';
import { errorOf, leaseOf, startServer, type TestServer } from '../support/server.js';

beforeAll(requireBuild);
let server: TestServer | undefined;
afterEach(async () => {
  killChildren();
  await server?.stop();
  server = undefined;
});

/** Where each header's column starts in the header line. */
function columns(header: string): Record<string, number> {
  return Object.fromEntries([...header.matchAll(/\S+/g)].map((m) => [m[0], m.index]));
}

describe('floatd log --follow as a table', () => {
  it('prints rows recorded after the header under the header\'s columns', async () => {
    server = await startServer({ seats: 1 });
    // Nothing matches yet: the header is printed alone, before any row it could be sized by.
    const child = spawnFloatd(['log', '--follow', '--event', 'granted,denied', '--data-dir', server.config.dataDir]);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('TIME'), 'the header');
    const alice = await server.connect('alice', 'alice-cad-1');
    const bob = await server.connect('bob', 'bob-1');
    const lease = leaseOf(await alice.request('acquire', { product: 'cad' }));
    expect(errorOf(await bob.request('acquire', { product: 'cad' })).code).toBe('NO_FREE_SEATS');
    await until(() => out.includes('NO_FREE_SEATS'), 'the followed rows');
    child.kill('SIGINT');
    expect((await exited(child)).code).toBe(0);
    const [header, granted, denied] = out.trimEnd().split('\n') as [string, string, string];
    const at = columns(header);
    expect(Object.keys(at)).toEqual(['TIME', 'EVENT', 'PRODUCT', 'WHO', 'SEATS', 'LEASE', 'REMOTE', 'CODE', 'BY', 'MESSAGE']);
    const startsAt = (row: string, text: string) => row.indexOf(text);
    expect(startsAt(granted, 'granted')).toBe(at['EVENT']);
    expect(startsAt(granted, 'cad')).toBe(at['PRODUCT']);
    expect(startsAt(granted, 'alice@')).toBe(at['WHO']);
    expect(startsAt(granted, '1/1')).toBe(at['SEATS']);
    expect(startsAt(granted, lease.id.slice(0, 8))).toBe(at['LEASE']);
    expect(startsAt(granted, '127.0.0.1')).toBe(at['REMOTE']);
    expect(startsAt(denied, 'denied')).toBe(at['EVENT']);
    expect(startsAt(denied, 'bob@')).toBe(at['WHO']);
    expect(startsAt(denied, 'NO_FREE_SEATS')).toBe(at['CODE']);
    await alice.close();
  });

  it('a cell wider than its column pushes only its neighbours: the next columns return under their headers', () => {
    const table = new LogTable(true);
    const base = { id: 1, ts: Date.UTC(2026, 10, 21, 9), product: 'cad', host: 'h', instance: 'i', seatsInUse: 1, seatsTotal: 2, leaseId: 'abcdef0123456789', remote: '127.0.0.1' };
    const [header, ...rows] = table.lines([{ ...base, event: 'granted', user: 'al' } as LeaseEvent]);
    const [wide] = table.lines([{ ...base, event: 'denied', user: 'a-user-with-a-long-name', code: 'NO_FREE_SEATS' } as LeaseEvent]);
    const at = columns(header!);
    expect(rows[0]!.indexOf('al@h/i')).toBe(at['WHO']);
    expect(wide!.indexOf('a-user-with-a-long-name@h/i')).toBe(at['WHO']);
    // WHO overflows; REMOTE's slack takes it up and CODE is back in place.
    expect(wide!.indexOf('NO_FREE_SEATS')).toBe(at['CODE']);
  });
});
