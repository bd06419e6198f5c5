import { describe, expect, it } from 'vitest';
import { Licensing } from '../../src/app/licensing.js';
import { withLicensing } from '../../src/app/inspect.js';
import { FakeClock } from '../support/fake-clock.js';
import { trustVendorKeys } from '../../src/adapters/crypto/license-keys.js';
import { FloatdError } from '../../src/domain/errors.js';
import { FakeLeaseStore } from '../support/fake-lease-store.js';
import { testConfig, until } from '../support/helpers.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { leaseOf, makeVendor, prepareDataDir, startServer } from '../support/server.js';

async function licensing(products: string[] = [], clock = new FakeClock(Date.now())) {
  const vendor = await makeVendor();
  const store = new FakeLeaseStore();
  const l = new Licensing(store, clock, await trustVendorKeys([vendor.pair.publicJwk]), products);
  return { vendor, store, l, clock };
}

async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof FloatdError) return { code: err.code, message: err.message };
    throw err;
  }
  throw new Error('expected a refusal');
}

function tamper(token: string, change: (claims: Record<string, unknown>) => void): string {
  const [h, p, s] = token.split('.');
  const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as Record<string, unknown>;
  change(claims);
  return [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
}

describe('license keys', () => {
  it('installs a good key and logs it', async () => {
    const { vendor, store, l } = await licensing();
    const key = await l.add(await vendor.issue({ seats: 7, product: 'cad', maxLeaseSeconds: 600 }));
    expect(key).toMatchObject({ seats: 7, product: 'cad', licensee: 'Acme', maxLeaseSeconds: 600 });
    expect((await store.queryEvents({ events: ['key-added'] }))[0]).toMatchObject({ poolId: key.id, product: 'cad', seatsTotal: 7 });
  });

  it('refuses a tampered key (seats raised) naming the signature', async () => {
    const { vendor, l } = await licensing();
    const forged = tamper(await vendor.issue({ seats: 5 }), (c) => (c['seats'] = 500));
    const r = await refusal(l.add(forged));
    expect(r.code).toBe('LICENSE_KEY_BAD_SIGNATURE');
    expect(r.message).toMatch(/altered/);
  });

  it('refuses a key from another vendor, naming its key id', async () => {
    const { l } = await licensing();
    const other = await makeVendor();
    const r = await refusal(l.add(await other.issue({})));
    expect(r.code).toBe('LICENSE_KEY_UNKNOWN_VENDOR');
    expect(r.message).toContain(other.pair.publicJwk.kid!);
  });

  it('refuses an expired key with its expiry date', async () => {
    const { vendor, l } = await licensing();
    const r = await refusal(l.add(await vendor.issue({ expires: new Date('2020-01-01T00:00:00Z'), now: Date.parse('2019-01-01') })));
    expect(r.code).toBe('LICENSE_KEY_EXPIRED');
    expect(r.message).toContain('2020-01-01T00:00:00.000Z');
  });

  it('accepts a key whose not-before date is ahead as pending', async () => {
    const { vendor, l } = await licensing();
    const key = await l.add(await vendor.issue({ notBefore: new Date(Date.now() + 86_400_000 * 10) }));
    expect(key.notBefore).toBeGreaterThan(Date.now());
  });

  it('refuses a key for a product the server does not serve', async () => {
    const { vendor, l } = await licensing(['cad']);
    const r = await refusal(l.add(await vendor.issue({ product: 'paint' })));
    expect(r.code).toBe('LICENSE_KEY_BAD_CLAIMS');
    expect(r.message).toContain('"paint"');
  });

  it('refuses garbage, a duplicate, and says when no vendor key is configured', async () => {
    const { vendor, l, store, clock } = await licensing();
    expect((await refusal(l.add('hello'))).code).toBe('LICENSE_KEY_MALFORMED');
    expect((await refusal(l.add('aaa.bbb.ccc'))).code).toBe('LICENSE_KEY_MALFORMED');
    const token = await vendor.issue({});
    await l.add(token);
    expect((await refusal(l.add(token))).code).toBe('LICENSE_KEY_DUPLICATE');
    const none = new Licensing(store, clock, [], []);
    expect((await refusal(none.add(token))).code).toBe('NO_VENDOR_KEYS');
  });

  it('refuses claims that make no sense, naming the claim', async () => {
    const { vendor } = await licensing();
    await expect(vendor.issue({ seats: 0 })).rejects.toThrow(/claim "seats"/);
  });

  it('a running server ignores a stored key that no longer verifies, and that key changes nothing', async () => {
    const vendor = await makeVendor();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile] });
    await prepareDataDir(config);
    await withLicensing(config, new FakeClock(Date.now()), async (_l, store) => {
      await store.addLicense({ id: 'forged', token: tamper(await vendor.issue({}), (c) => (c['jti'] = 'forged')), addedAt: 1 }, { ts: 1, event: 'key-added' });
    });
    const server = await startServer({ vendor, dataDir: config.dataDir });
    const status = await server.floatd.status();
    expect(status.rejectedKeys.map((r) => r.code)).toEqual(['LICENSE_KEY_BAD_SIGNATURE']);
    // Evaluation goes on as if the key were not there.
    expect(status.mode).toBe('evaluation');
    const c = await server.connect('a');
    expect((await c.request('acquire', { product: 'cad' })).ok).toBe(true);
    await server.stop();
  });

  it('with evaluation off and no usable key, says so and names the ignored key', async () => {
    const vendor = await makeVendor();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile], 'evaluation.seats': 0 });
    await prepareDataDir(config);
    await withLicensing(config, new FakeClock(Date.now()), async (_l, store) => {
      await store.addLicense({ id: 'forged', token: tamper(await vendor.issue({}), (c) => (c['jti'] = 'forged')), addedAt: 1 }, { ts: 1, event: 'key-added' });
    });
    const server = await startServer({ vendor, dataDir: config.dataDir, flags: { 'evaluation.seats': 0 } });
    expect((await server.floatd.status()).mode).toBe('unlicensed');
    const denied = await (await server.connect('a')).request('acquire', { product: 'cad' });
    expect(!denied.ok && denied.error).toMatchObject({
      code: 'NO_LICENSE',
      message: 'no usable license key is installed (ignored: forged (LICENSE_KEY_BAD_SIGNATURE); see floatd status) and evaluation is off (evaluation.seats is 0)',
    });
    await server.stop();
  });

  it('keeps evaluation running beside a pending key, then grants from the key on its date and revokes evaluation leases', async () => {
    const clock = new FakeClock(Date.now());
    const vendor = await makeVendor();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile] });
    await prepareDataDir(config);
    const startsAt = clock.now() + 60_000;
    const key = await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ seats: 1, notBefore: new Date(startsAt) })));
    const server = await startServer({ vendor, dataDir: config.dataDir, clock });
    expect(await server.floatd.status()).toMatchObject({ mode: 'evaluation', keys: [{ id: key.id, state: 'not-yet-valid' }] });
    const events: Array<Record<string, unknown>> = [];
    const t = await TcpTransport.connect(server.address, { onEvent: (e) => events.push(e) });
    await t.request('hello', { v: 1, client: { user: 'a', instance: 'a-1' }, product: 'cad' });
    const evaluationLease = leaseOf(await t.request('acquire'));
    clock.advance(60_000);
    await until(() => events.length > 0, 'the evaluation lease to be revoked');
    expect(events[0]).toMatchObject({ event: 'revoked', lease: evaluationLease.id, reason: `evaluation ended: license key ${key.id} is in force` });
    expect(await server.floatd.status()).toMatchObject({ mode: 'licensed', products: [{ product: 'cad', seatsTotal: 1 }] });
    expect(leaseOf(await t.request('acquire')).id).not.toBe(evaluationLease.id);
    t.close();
    await server.stop();
  });

  it('stops granting from a key when it expires, and logs the expiry once', async () => {
    const clock = new FakeClock(Date.now());
    const vendor = await makeVendor();
    const config = testConfig({ vendorPublicKeys: [vendor.publicFile] });
    await prepareDataDir(config);
    await withLicensing(config, clock, async (l) => l.add(await vendor.issue({ expires: new Date(clock.now() + 60_000) })));
    const server = await startServer({ vendor, dataDir: config.dataDir, clock });
    const c = await server.connect('a');
    expect((await c.request('acquire', { product: 'cad' })).ok).toBe(true);
    // A lease never outlives its key: it ends at the key's expiry, not a lease length later.
    const lease = leaseOf(await c.request('renew', { lease: (await server.floatd.store.allLeases())[0]!.id }));
    expect(lease.expiresInMs).toBeLessThanOrEqual(60_000);
    const { exp } = JSON.parse(Buffer.from(lease.token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    expect(exp * 1000).toBeLessThanOrEqual(clock.now() + 61_000);
    clock.advance(61_000);
    await server.settle();
    expect(await server.floatd.store.allLeases()).toEqual([]);
    const denied = await (await server.connect('b')).request('acquire', { product: 'cad' });
    expect(!denied.ok && denied.error.code).toBe('LICENSE_EXPIRED');
    expect(await server.floatd.store.queryEvents({ events: ['key-expired'] })).toHaveLength(1);
    await server.stop();
  });
});
