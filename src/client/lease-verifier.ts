import type { JWK } from 'jose';
import { thumbprint } from '../adapters/crypto/keys.js';
import { verifyLeaseToken, type LeaseTokenClaims } from '../adapters/crypto/lease-tokens.js';
import { trustVendorKeys, verifyLicenseKey, type TrustedVendorKey } from '../adapters/crypto/license-keys.js';
import { verifyActivation } from '../adapters/crypto/activation-tokens.js';
import type { Clock } from '../domain/clock.js';
import { LeaseClientError, type LeaseClientEvents, type LeaseClientOptions, type LeaseInfo } from './lease-client-types.js';
import type { Reply } from './transport.js';

/** The options that decide which server key and which leases a client trusts. */
export type TrustOptions = Pick<LeaseClientOptions, 'server' | 'serverPublicKey' | 'serverKeyFingerprint' | 'pinServerKey' | 'vendorPublicKey'>;

/**
 * What a lease client trusts: the server's lease-signing key (pinned, or the
 * first one seen, with a change said by `keyChanged`), and each lease token
 * signed by it for this client; with vendorPublicKey, the chain from the
 * vendor to the lease.
 */
export class LeaseVerifier {
  private serverKey: JWK | null = null;
  /** Fingerprint of the key of the first server this client trusted, to notice another one. */
  private knownKeyFp: string | null = null;
  /** Server clock minus ours, from hello, so token expiry is judged on the server's clock. */
  private skewMs = 0;
  private vendorKeys: TrustedVendorKey[] | null = null;

  constructor(
    private readonly options: TrustOptions,
    private readonly holder: { readonly user: string; readonly instance: string },
    private readonly clock: Clock,
    private readonly keyChanged: (change: LeaseClientEvents['serverKeyChanged'][0]) => void,
  ) {}

  /** Trusts the key a server's hello names, or throws; from then on that key and the server's clock judge its lease tokens. */
  async trustServer(key: JWK | undefined, serverTimeMs: unknown): Promise<void> {
    await this.checkServerKey(key);
    this.serverKey = key!;
    this.skewMs = typeof serverTimeMs === 'number' ? serverTimeMs - this.clock.now() : 0;
  }

  private async checkServerKey(key: JWK | undefined): Promise<void> {
    if (key === undefined || typeof key !== 'object' || key.kty !== 'OKP') {
      throw new LeaseClientError('TOKEN_INVALID', 'the server sent no usable lease-signing key in hello');
    }
    const pinned = this.options.serverPublicKey ? await thumbprint(this.options.serverPublicKey) : this.options.serverKeyFingerprint;
    const fp = await thumbprint(key);
    if (pinned !== undefined && fp !== pinned) {
      throw new LeaseClientError('TOKEN_INVALID', `the server's lease-signing key is not the pinned one (${pinned}): refusing to trust it`);
    }
    const pin = this.options.pinServerKey;
    const expected = typeof pin === 'string' ? pin : this.knownKeyFp;
    if (expected === null || fp === expected) {
      this.knownKeyFp ??= fp;
      return;
    }
    const refused = pin !== undefined || this.options.vendorPublicKey !== undefined;
    this.keyChanged({ from: expected, to: fp, refused });
    if (refused) {
      throw new LeaseClientError(
        'SERVER_KEY_CHANGED',
        `the server's lease-signing key changed from ${expected} to ${fp}: refusing its leases (${pin !== undefined ? 'pinServerKey' : 'vendorPublicKey'}); another server answers at ${this.options.server}, or the server lost its key`,
      );
    }
    // Not pinned: the new key is trusted from now on, and said loudly by the event.
    this.knownKeyFp = fp;
  }

  /** Verifies the lease token's signature and that its claims are this lease, for this client. */
  async lease(reply: Reply): Promise<LeaseInfo> {
    const wire = (reply as { lease?: Record<string, unknown> }).lease;
    if (wire === undefined || typeof wire['id'] !== 'string' || typeof wire['token'] !== 'string') {
      throw new LeaseClientError('TOKEN_INVALID', 'the server answered without a lease');
    }
    let claims: LeaseTokenClaims;
    try {
      claims = await verifyLeaseToken(wire['token'], this.serverKey!, { now: this.clock.now() + this.skewMs, clockToleranceSec: 60 });
    } catch (err) {
      throw new LeaseClientError('TOKEN_INVALID', (err as Error).message);
    }
    const { user, instance } = this.holder;
    const wrong = claims.leaseId !== wire['id'] ? 'lease id' : claims.user !== user ? 'user' : claims.instance !== instance ? 'instance' : claims.product !== wire['product'] ? 'product' : null;
    if (wrong !== null) throw new LeaseClientError('TOKEN_INVALID', `lease token rejected: its ${wrong} is not this lease's`);
    if (this.options.vendorPublicKey !== undefined) await this.verifyChain(wire, claims);
    return {
      id: wire['id'],
      product: String(wire['product']),
      leaseMs: Number(wire['leaseMs']),
      renewAfterMs: Number(wire['renewAfterMs']),
      expiresInMs: Number(wire['expiresInMs']),
      token: wire['token'],
      claims,
    };
  }

  /** License key → activation → server key → lease token, each checked against the vendor's key. */
  private async verifyChain(wire: Record<string, unknown>, claims: LeaseTokenClaims): Promise<void> {
    const refuse = (why: string) => new LeaseClientError('TOKEN_INVALID', `the lease does not chain to the vendor: ${why}`);
    const given = this.options.vendorPublicKey!;
    this.vendorKeys ??= await trustVendorKeys(Array.isArray(given) ? given : [given as JWK]);
    const license = wire['license'] as { key?: unknown; activation?: unknown } | undefined;
    if (license === undefined || typeof license.key !== 'string') {
      throw refuse('it carries no license key (an evaluation lease, or a server that cannot show a license from this vendor)');
    }
    let key;
    try {
      key = await verifyLicenseKey(license.key, this.vendorKeys);
    } catch (err) {
      throw refuse(`its license key is not the vendor's: ${(err as Error).message}`);
    }
    if (key.product !== wire['product']) throw refuse(`its license key is for product "${key.product}", not "${String(wire['product'])}"`);
    if (claims.pool !== key.id) throw refuse(`the lease token is from pool ${String(claims.pool)}, not license key ${key.id}`);
    if (!key.activation) throw refuse(`license key ${key.id} needs no activation, so nothing ties it to this server's key`);
    if (typeof license.activation !== 'string') throw refuse(`it carries no activation of license key ${key.id}`);
    let activation;
    try {
      activation = await verifyActivation(license.activation, this.vendorKeys);
    } catch (err) {
      throw refuse(`its activation is not the vendor's: ${(err as Error).message}`);
    }
    if (activation.keyId !== key.id) throw refuse(`its activation is for license key ${activation.keyId}, not ${key.id}`);
    const serverKid = await thumbprint(this.serverKey!);
    if (activation.serverKid !== serverKid) throw refuse(`no activation names this server's key ${serverKid} (the activation names ${activation.serverKid})`);
  }
}
