/**
 * Makes docs/dashboard.png: a real floatd with two products, a day of lease
 * history in its log, a few live leases and a denial, shown in headless
 * Chromium (Debian's `chromium`, driven by playwright-core).
 *
 *   npm run build && node dist/scripts/screenshot-dashboard.js [--out FILE] [--chromium PATH]
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';
import { SystemClock } from '../src/adapters/clock/system-clock.js';
import { newEd25519KeyPair, writeSecretFile } from '../src/adapters/crypto/keys.js';
import { issueLicenseKey, trustVendorKeys, verifyLicenseKey } from '../src/adapters/crypto/license-keys.js';
import { silentLogger } from '../src/adapters/log/logger.js';
import { packageRoot } from '../src/adapters/package-root.js';
import { SqliteLeaseStore } from '../src/adapters/sqlite/sqlite-lease-store.js';
import { Floatd } from '../src/app/floatd.js';
import { withLicensing } from '../src/app/inspect.js';
import { LeaseClient } from '../src/client/index.js';
import { loadConfig } from '../src/config/config.js';
import type { LeaseEventInput } from '../src/domain/events.js';

const { values } = parseArgs({ options: { out: { type: 'string' }, chromium: { type: 'string' } } });
const out = values.out ?? join(packageRoot(), 'docs', 'dashboard.png');
const executablePath = values.chromium ?? execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim();
const dir = mkdtempSync(join(tmpdir(), 'floatd-screenshot-'));

/** A working day of leases in the log: busy mornings and afternoons, a full pool before lunch. */
function history(store: SqliteLeaseStore, now: number, keys: Record<string, { id: string; seats: number }>): void {
  let seed = 7;
  const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2_147_483_648) / 2_147_483_648);
  const events: LeaseEventInput[] = [];
  const names = ['ana', 'ben', 'chen', 'dara', 'eli', 'fay', 'gus', 'hana', 'ivo', 'jun', 'kim', 'lea', 'max', 'nia'];
  for (const [product, key] of Object.entries(keys)) {
    const open: Array<{ id: string; user: string; until: number }> = [];
    for (let t = now - 24 * 3_600_000; t < now - 600_000; t += 240_000) {
      const hour = new Date(t).getHours();
      const demand = hour >= 8 && hour < 18 ? (hour === 11 ? 1.3 : 0.8) : 0.15;
      for (let i = open.length - 1; i >= 0; i--) {
        const l = open[i]!;
        if (l.until > t) continue;
        open.splice(i, 1);
        events.push({ ts: t, event: 'released', product, poolId: key.id, leaseId: l.id, user: l.user, host: `${l.user}-ws`, instance: `${l.user}-1`, seatsInUse: open.length, seatsTotal: key.seats });
      }
      if (rand() > demand * 0.6) continue;
      const user = names[Math.floor(rand() * names.length)]!;
      const who = { product, user, host: `${user}-ws`, instance: `${user}-1`, remote: '10.0.4.17', listener: 'tcp' };
      if (open.length >= key.seats || open.some((l) => l.user === user)) {
        if (open.length >= key.seats) events.push({ ts: t, event: 'denied', ...who, poolId: key.id, code: 'NO_FREE_SEATS', message: `all ${key.seats} seat(s) of "${product}" are in use`, seatsInUse: key.seats, seatsTotal: key.seats });
        continue;
      }
      const id = `${product}-${t}`;
      open.push({ id, user, until: t + 1_800_000 + rand() * 9_000_000 });
      events.push({ ts: t, event: 'granted', ...who, poolId: key.id, leaseId: id, seatsInUse: open.length, seatsTotal: key.seats });
    }
    for (const l of open) events.push({ ts: now - 600_000, event: 'released', product, poolId: key.id, leaseId: l.id, user: l.user, host: `${l.user}-ws`, instance: `${l.user}-1`, seatsInUse: 0, seatsTotal: key.seats });
  }
  events.sort((a, b) => a.ts - b.ts);
  store.transact((tx) => {
    for (const e of events) tx.appendEvent(e);
  });
}

async function main(): Promise<void> {
  const vendor = await newEd25519KeyPair();
  const vendorFile = join(dir, 'vendor-public.jwk');
  writeSecretFile(vendorFile, JSON.stringify(vendor.publicJwk));
  const config = loadConfig({
    env: {},
    cwd: dir,
    flags: { dataDir: join(dir, 'data'), listeners: ['127.0.0.1:0'], 'http.listen': ['127.0.0.1:0'], vendorPublicKeys: [vendorFile], 'log.level': 'silent', 'evaluation.stateDir': join(dir, 'evaluation') },
  });
  await (await Floatd.create(config, { logger: silentLogger() })).stop();
  const now = Date.now();
  const keys: Record<string, { id: string; seats: number }> = {};
  const tokens: string[] = [];
  const trusted = await trustVendorKeys([vendor.publicJwk]);
  for (const [product, seats, days] of [['cad', 8, 40], ['sim', 3, 400]] as const) {
    const token = await issueLicenseKey(vendor.privateJwk, { licensee: 'Acme Engineering', product, seats, now: now - 2 * 86_400_000, expires: new Date(now + days * 86_400_000) });
    keys[product] = { id: (await verifyLicenseKey(token, trusted)).id, seats };
    tokens.push(token);
  }
  // The day before, as the log recorded it; then the keys as installed now.
  const store = new SqliteLeaseStore(config.dbFile);
  history(store, now, keys);
  store.close();
  for (const token of tokens) await withLicensing(config, new SystemClock(), (l) => l.add(token));

  const floatd = await Floatd.create(config, { logger: silentLogger() });
  const [tcp] = await floatd.start();
  const clients: LeaseClient[] = [];
  try {
    for (const [user, product] of [['ana', 'cad'], ['ben', 'cad'], ['chen', 'cad'], ['dara', 'cad'], ['eli', 'cad'], ['fay', 'sim'], ['gus', 'sim'], ['hana', 'sim']] as const) {
      const c = new LeaseClient({ server: `127.0.0.1:${tcp!.port}`, user, host: `${user}-ws`, instance: `${user}-1`, product, retryIntervalMs: 0 });
      clients.push(c);
      await c.acquire();
    }
    const late = new LeaseClient({ server: `127.0.0.1:${tcp!.port}`, user: 'ivo', host: 'ivo-ws', instance: 'ivo-1', product: 'sim', retryIntervalMs: 0 });
    clients.push(late);
    await late.acquire().catch(() => {});

    const http = floatd.listenerStatus().find((l) => l.scheme === 'http')!;
    const base = `http://127.0.0.1:${http.port}`;
    const browser = await chromium.launch({ executablePath, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
      await page.goto(`${base}/login`);
      await page.fill('#token', readFileSync(config.adminTokenFile, 'utf8').trim());
      await Promise.all([page.waitForURL(`${base}/`), page.click('button[type=submit]')]);
      await page.waitForSelector('body[data-loaded="true"]', { state: 'attached' });
      await page.waitForSelector('#chart svg rect.bar', { state: 'attached' });
      await page.screenshot({ path: out, fullPage: true });
      console.log(`wrote ${out}`);
    } finally {
      await browser.close();
    }
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    await floatd.stop();
  }
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => rmSync(dir, { recursive: true, force: true }));
