import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { BlockView, LeaseView } from '../domain/admin-replies.js';
import type { Block, BlockScope } from '../domain/blocks.js';
import type { Clock } from '../domain/clock.js';
import { deny, FloatdError, type Denial } from '../domain/errors.js';
import type { EventFilter, LeaseEvent } from '../domain/events.js';
import type { Lease } from '../domain/lease.js';
import type { AdminToken, AdminTokenStore, LeaseStore } from '../domain/ports.js';
import { writeSecretFile } from '../adapters/crypto/keys.js';
import type { LeaseService } from './lease-service.js';

export type { BlockView, LeaseView } from '../domain/admin-replies.js';

export const LOCAL_TOKEN = 'local';
const NAME_RE = /^[A-Za-z0-9_.@-]{1,64}$/;

export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

function newToken(): string {
  return `fdt_${randomBytes(32).toString('base64url')}`;
}

/** Admin tokens on the data directory: the server's `local` one and those `floatd admin token` manages. */
export class AdminTokens {
  /** The name of this server's own token: `local`, or `local@NODE` for a node of a cluster (each node has its own file). */
  readonly localName: string;

  constructor(
    private readonly store: AdminTokenStore,
    private readonly clock: Pick<Clock, 'now'>,
    nodeId: string | null = null,
  ) {
    this.localName = nodeId === null ? LOCAL_TOKEN : `${LOCAL_TOKEN}@${nodeId}`;
  }

  /**
   * Makes sure `file` holds a token the server accepts as `local` (made at first
   * start, mode 0600): a file from before is kept, and its hash put back if the
   * database lost it.
   */
  async ensureLocal(file: string): Promise<{ created: boolean }> {
    if (existsSync(file)) {
      const token = readFileSync(file, 'utf8').trim();
      if (token !== '' && (await this.store.adminTokenByHash(hashToken(token))) === this.localName) return { created: false };
      if (token !== '') {
        await this.put(this.localName, token, true, 'server');
        return { created: false };
      }
    }
    const token = newToken();
    writeSecretFile(file, `${token}\n`);
    await this.put(this.localName, token, true, 'server');
    return { created: true };
  }

  /** A new token named `name`; returns it (shown once, never stored in clear). */
  async create(name: string, actor: string): Promise<string> {
    if (!NAME_RE.test(name)) throw new FloatdError('USAGE', `a token name is 1-64 letters, digits or _ . @ -; got "${name}"`);
    if (name === LOCAL_TOKEN || name.startsWith(`${LOCAL_TOKEN}@`)) throw new FloatdError('USAGE', `"${LOCAL_TOKEN}" is the server's own token (in the data directory's admin-token file)`);
    const token = newToken();
    if (!(await this.put(name, token, false, actor))) throw new FloatdError('USAGE', `an admin token named "${name}" exists; revoke it first, or choose another name`);
    return token;
  }

  list(): Promise<AdminToken[]> {
    return this.store.listAdminTokens();
  }

  async revoke(name: string, actor: string): Promise<void> {
    const removed = await this.store.removeAdminToken(name, { ts: this.clock.now(), event: 'admin-token-revoked', message: `admin token ${name} revoked`, actor });
    if (!removed) throw new FloatdError('USAGE', `no admin token is named "${name}" (see floatd admin token list)`);
  }

  /**
   * The actor a bearer token stands for (`token:NAME`), or null. Tokens are
   * found by their SHA-256: the lookup's timing can tell only about the hash.
   */
  actorOf(token: string): Promise<string | null> {
    return this.actorOfHash(hashToken(token.trim()));
  }

  /** A token's actor and a check that it is still valid (not revoked since), or null: what a dashboard session holds. */
  async signIn(token: string): Promise<{ actor: string; stillValid: () => Promise<boolean> } | null> {
    const hash = hashToken(token.trim());
    const actor = await this.actorOfHash(hash);
    return actor === null ? null : { actor, stillValid: async () => (await this.actorOfHash(hash)) === actor };
  }

  private async actorOfHash(hash: string): Promise<string | null> {
    const name = await this.store.adminTokenByHash(hash);
    return name === undefined ? null : `token:${name}`;
  }

  private put(name: string, token: string, replace: boolean, actor: string): Promise<boolean> {
    return this.store.putAdminToken(name, hashToken(token), replace, { ts: this.clock.now(), event: 'admin-token-created', message: `admin token ${name} created`, actor });
  }
}

function blockView(b: Block, now: number): BlockView {
  const iso = (t: number) => new Date(t).toISOString();
  return { id: b.id, scope: b.scope, user: b.user, instance: b.instance, product: b.product, since: iso(b.createdAt), until: iso(b.until), endsInMs: Math.max(0, b.until - now), reason: b.reason, actor: b.actor, lease: b.leaseId };
}

/** The admin use cases the web endpoint's /v1/admin routes serve. */
export class AdminService {
  constructor(
    private readonly deps: {
      readonly store: LeaseStore;
      readonly leases: LeaseService;
      readonly clock: Clock;
    },
  ) {}

  /** Running leases, filtered, soonest to expire last (the `lmstat -a` view). */
  async leases(filter: { user?: string; host?: string; product?: string }): Promise<LeaseView[]> {
    const now = this.deps.clock.now();
    const iso = (t: number) => new Date(t).toISOString();
    return (await this.deps.store.allLeases())
      .filter((l: Lease) => l.expiresAt > now && (filter.user === undefined || l.user === filter.user) && (filter.host === undefined || l.host === filter.host) && (filter.product === undefined || l.product === filter.product))
      .map((l) => ({
        id: l.id,
        user: l.user,
        host: l.host,
        instance: l.instance,
        remote: l.remote,
        listener: l.listener,
        product: l.product,
        pool: l.poolId,
        grantedAt: iso(l.grantedAt),
        renewedAt: iso(l.renewedAt),
        expiresAt: iso(l.expiresAt),
        expiresInMs: l.expiresAt - now,
        ...(l.node === undefined ? {} : { node: l.node }),
      }));
  }

  /** Ends a lease at once, as one unit of work like every lease change; with `block`, keeps its holder out for a while. */
  async revoke(leaseId: string, reason: string, actor: string, block?: { seconds: number; scope: BlockScope }): Promise<{ ok: true; lease: LeaseView; block?: BlockView } | Denial> {
    const held = await this.leases({});
    const matches = held.filter((l) => l.id === leaseId || l.id.startsWith(leaseId));
    const exact = matches.find((l) => l.id === leaseId);
    if (exact === undefined && matches.length > 1) return deny('BAD_REQUEST', `"${leaseId}" is the start of ${matches.length} lease ids; give more of it`);
    const view = exact ?? matches[0];
    if (view === undefined) return deny('LEASE_NOT_FOUND', `no running lease has id ${leaseId} (see floatd admin leases)`);
    const outcome = await this.deps.leases.revoke(view.id, reason, actor, block);
    if (!outcome.ok) return outcome;
    return outcome.block === null ? { ok: true, lease: view } : { ok: true, lease: view, block: blockView(outcome.block, this.deps.clock.now()) };
  }

  /** Blocks in force (holders kept out after a revoke), soonest to end first. */
  async blocks(): Promise<BlockView[]> {
    const now = this.deps.clock.now();
    return (await this.deps.store.blocks(now)).map((b) => blockView(b, now));
  }

  /** Lifts a block (its id, or a unique start of it) before its end. */
  async unblock(blockId: string, actor: string): Promise<{ ok: true; block: BlockView } | Denial> {
    const matches = (await this.blocks()).filter((b) => b.id === blockId || b.id.startsWith(blockId));
    const exact = matches.find((b) => b.id === blockId);
    if (exact === undefined && matches.length > 1) return deny('BAD_REQUEST', `"${blockId}" is the start of ${matches.length} block ids; give more of it`);
    const found = exact ?? matches[0];
    if (found === undefined) return deny('BLOCK_NOT_FOUND', `no block in force has id ${blockId} (see floatd admin blocks)`);
    const outcome = await this.deps.leases.unblock(found.id, actor);
    return outcome.ok ? { ok: true, block: blockView(outcome.block, this.deps.clock.now()) } : outcome;
  }

  log(filter: EventFilter): Promise<LeaseEvent[]> {
    return this.deps.store.queryEvents(filter);
  }

  /** Records an admin action in the lease log with its actor. */
  record(event: 'listener-suspended' | 'listener-resumed' | 'tls-reloaded', actor: string, message: string): Promise<void> {
    return this.deps.store.appendEvent({ ts: this.deps.clock.now(), event, actor, message });
  }
}
