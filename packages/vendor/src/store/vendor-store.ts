import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { HostComponent } from '../../../../src/domain/activation.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { createPrivateDir, createPrivateFile, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, tighten } from '../../../../src/adapters/fs/private-files.js';
import { loadMigrations, migrate } from '../../../../src/adapters/sqlite/migrate.js';
import { vendorPackageDir } from '../package-dir.js';

/** The meta entry naming the vendor's private key file, recorded when keys are issued or served with it. */
export const PRIVATE_KEY_META = 'privateKeyFile';

export interface VendorKeyRecord {
  readonly id: string;
  readonly licensee: string;
  readonly product: string;
  readonly seats: number;
  readonly activationLimit: number | null;
  readonly containerBinding: boolean;
  readonly activationUrl: string | null;
  readonly expiresAt: number | null;
  readonly issuedAt: number;
  readonly token: string;
}

export interface VendorActivationRecord {
  readonly id: string;
  readonly keyId: string;
  readonly serverKid: string;
  readonly serverKey: string;
  readonly binding: Partial<Record<HostComponent, string>>;
  readonly container: boolean;
  readonly via: 'online' | 'offline';
  readonly remote: string | null;
  readonly activatedAt: number;
  readonly lastSeenAt: number;
  readonly releasedAt: number | null;
  readonly releasedVia: string | null;
}

interface ActivationRow {
  id: string;
  key_id: string;
  server_kid: string;
  server_key: string;
  fingerprint: string;
  container: number;
  via: 'online' | 'offline';
  remote: string | null;
  activated_at: number;
  last_seen_at: number;
  released_at: number | null;
  released_via: string | null;
}

function toRecord(r: ActivationRow): VendorActivationRecord {
  return {
    id: r.id,
    keyId: r.key_id,
    serverKid: r.server_kid,
    serverKey: r.server_key,
    binding: JSON.parse(r.fingerprint) as VendorActivationRecord['binding'],
    container: r.container === 1,
    via: r.via,
    remote: r.remote,
    activatedAt: r.activated_at,
    lastSeenAt: r.last_seen_at,
    releasedAt: r.released_at,
    releasedVia: r.released_via,
  };
}

/** An evaluation registered with the vendor: one per host (binding) and product file (its products). */
export interface VendorEvaluationRecord {
  readonly id: string;
  /** The product file's products, sorted, comma-separated. */
  readonly products: string;
  readonly serverKid: string;
  readonly binding: Partial<Record<HostComponent, string>>;
  readonly via: 'online' | 'offline';
  readonly remote: string | null;
  readonly startedAt: number;
  readonly endsAt: number;
  readonly lastSeenAt: number;
}

/** The vendor's own database (VDIR/vendor.db): issued keys, activations, answered nonces. */
export class VendorStore {
  private readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  /**
   * Opens VDIR/vendor.db. It holds every issued key and its licensee: the folder
   * is made (or made again) 0700 and the database and its WAL files 0600,
   * whatever the umask, as the server's data directory is.
   */
  static open(dir: string): VendorStore {
    let db: Database.Database;
    try {
      const file = join(dir, 'vendor.db');
      if (!createPrivateDir(dir)) tighten(dir, PRIVATE_DIR_MODE);
      if (!createPrivateFile(file)) for (const f of [file, `${file}-wal`, `${file}-shm`, `${file}-journal`]) tighten(f, PRIVATE_FILE_MODE);
      db = new Database(file);
      db.pragma('busy_timeout = 5000');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      migrate(db, loadMigrations(join(vendorPackageDir(), 'migrations')));
    } catch (err) {
      throw new FloatdError('DATA_DIR_INVALID', `cannot use the vendor data directory ${dir}: ${(err as Error).message}`, { setting: 'data-dir' });
    }
    return new VendorStore(db);
  }

  /** Runs `fn` as one immediate transaction. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  recordKey(k: VendorKeyRecord): void {
    this.db
      .prepare(
        `INSERT INTO keys (id, licensee, product, seats, activation_limit, container_binding, activation_url, expires_at, issued_at, token)
         VALUES (@id, @licensee, @product, @seats, @activationLimit, @containerBinding, @activationUrl, @expiresAt, @issuedAt, @token)`,
      )
      .run({ ...k, containerBinding: k.containerBinding ? 1 : 0 });
  }

  findKey(id: string): VendorKeyRecord | undefined {
    const r = this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM keys WHERE id = ?').get(id);
    if (r === undefined) return undefined;
    return {
      id: r['id'] as string,
      licensee: r['licensee'] as string,
      product: r['product'] as string,
      seats: r['seats'] as number,
      activationLimit: r['activation_limit'] as number | null,
      containerBinding: r['container_binding'] === 1,
      activationUrl: r['activation_url'] as string | null,
      expiresAt: r['expires_at'] as number | null,
      issuedAt: r['issued_at'] as number,
      token: r['token'] as string,
    };
  }

  activeActivations(keyId: string): VendorActivationRecord[] {
    return this.db.prepare<[string], ActivationRow>('SELECT * FROM activations WHERE key_id = ? AND released_at IS NULL ORDER BY activated_at').all(keyId).map(toRecord);
  }

  findActivation(id: string): VendorActivationRecord | undefined {
    const r = this.db.prepare<[string], ActivationRow>('SELECT * FROM activations WHERE id = ?').get(id);
    return r === undefined ? undefined : toRecord(r);
  }

  listActivations(keyId: string | null): VendorActivationRecord[] {
    const rows = keyId === null
      ? this.db.prepare<[], ActivationRow>('SELECT * FROM activations ORDER BY key_id, activated_at').all()
      : this.db.prepare<[string], ActivationRow>('SELECT * FROM activations WHERE key_id = ? ORDER BY activated_at').all(keyId);
    return rows.map(toRecord);
  }

  insertActivation(a: VendorActivationRecord): void {
    this.db
      .prepare(
        `INSERT INTO activations (id, key_id, server_kid, server_key, fingerprint, container, via, remote, activated_at, last_seen_at)
         VALUES (@id, @keyId, @serverKid, @serverKey, @fingerprint, @container, @via, @remote, @activatedAt, @lastSeenAt)`,
      )
      .run({ id: a.id, keyId: a.keyId, serverKid: a.serverKid, serverKey: a.serverKey, fingerprint: JSON.stringify(a.binding), container: a.container ? 1 : 0, via: a.via, remote: a.remote, activatedAt: a.activatedAt, lastSeenAt: a.lastSeenAt });
  }

  /** The same host activated again (or re-validated): its current server key and binding, seen now. */
  refreshActivation(id: string, serverKid: string, serverKey: string, binding: VendorActivationRecord['binding'], at: number): void {
    this.db.prepare<[string, string, string, number, string]>('UPDATE activations SET server_kid = ?, server_key = ?, fingerprint = ?, last_seen_at = ? WHERE id = ?').run(serverKid, serverKey, JSON.stringify(binding), at, id);
  }

  releaseActivation(id: string, via: string, at: number): boolean {
    return this.db.prepare<[number, string, string]>('UPDATE activations SET released_at = ?, released_via = ? WHERE id = ? AND released_at IS NULL').run(at, via, id).changes > 0;
  }

  /** Records a nonce; false when it was seen before. */
  useNonce(nonce: string, kind: string, activationId: string | null, at: number): boolean {
    return this.db.prepare<[string, string, string | null, number]>('INSERT INTO nonces (nonce, kind, activation_id, seen_at) VALUES (?, ?, ?, ?) ON CONFLICT (nonce) DO NOTHING').run(nonce, kind, activationId, at).changes > 0;
  }

  nonceUse(nonce: string): { kind: string; activationId: string | null; seenAt: number } | undefined {
    const r = this.db.prepare<[string], { kind: string; activation_id: string | null; seen_at: number }>('SELECT kind, activation_id, seen_at FROM nonces WHERE nonce = ?').get(nonce);
    return r === undefined ? undefined : { kind: r.kind, activationId: r.activation_id, seenAt: r.seen_at };
  }

  evaluations(products: string | null): VendorEvaluationRecord[] {
    const rows = (products === null
      ? this.db.prepare<[], Record<string, unknown>>('SELECT * FROM evaluations ORDER BY started_at').all()
      : this.db.prepare<[string], Record<string, unknown>>('SELECT * FROM evaluations WHERE products = ? ORDER BY started_at').all(products));
    return rows.map((r) => ({
      id: r['id'] as string,
      products: r['products'] as string,
      serverKid: r['server_kid'] as string,
      binding: JSON.parse(r['fingerprint'] as string) as VendorEvaluationRecord['binding'],
      via: r['via'] as 'online' | 'offline',
      remote: r['remote'] as string | null,
      startedAt: r['started_at'] as number,
      endsAt: r['ends_at'] as number,
      lastSeenAt: r['last_seen_at'] as number,
    }));
  }

  insertEvaluation(e: VendorEvaluationRecord): void {
    this.db
      .prepare('INSERT INTO evaluations (id, products, server_kid, fingerprint, via, remote, started_at, ends_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(e.id, e.products, e.serverKid, JSON.stringify(e.binding), e.via, e.remote, e.startedAt, e.endsAt, e.lastSeenAt);
  }

  /** The same host registered again: its current server key, seen now. */
  evaluationSeen(id: string, serverKid: string, at: number): void {
    this.db.prepare<[string, number, string]>('UPDATE evaluations SET server_kid = ?, last_seen_at = ? WHERE id = ?').run(serverKid, at, id);
  }

  getMeta(key: string): string | undefined {
    return this.db.prepare<[string], { value: string }>('SELECT value FROM meta WHERE key = ?').get(key)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare<[string, string]>('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value').run(key, value);
  }

  close(): void {
    this.db.close();
  }
}
