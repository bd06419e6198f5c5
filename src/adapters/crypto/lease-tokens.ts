import { SignJWT, jwtVerify, type CryptoKey, type JWK } from 'jose';
import { FloatdError } from '../../domain/errors.js';
import type { Lease } from '../../domain/lease.js';
import { importEd25519 } from './keys.js';

export const LEASE_TOKEN_TYPE = 'floatd-lease+jwt';

export interface LeaseTokenClaims {
  readonly leaseId: string;
  readonly product: string;
  readonly user: string;
  readonly host: string;
  readonly instance: string;
  /** The pool the lease is from: a license key id, or "evaluation". */
  readonly pool: string | null;
  readonly issuedAt: number;
  readonly expiresAt: number;
}

/** Signs lease tokens with the server's Ed25519 key. */
export class LeaseTokenSigner {
  private constructor(
    private readonly key: CryptoKey,
    private readonly kid: string,
  ) {}

  static async create(privateJwk: JWK): Promise<LeaseTokenSigner> {
    return new LeaseTokenSigner(await importEd25519(privateJwk), privateJwk.kid ?? '');
  }

  /** `now` is when the lease was (re)granted; `exp` is the lease's expiry. */
  sign(lease: Lease, now: number): Promise<string> {
    return new SignJWT({ product: lease.product, user: lease.user, host: lease.host, instance: lease.instance, pool: lease.poolId })
      .setProtectedHeader({ alg: 'EdDSA', typ: LEASE_TOKEN_TYPE, kid: this.kid })
      .setJti(lease.id)
      .setIssuer('floatd')
      .setIssuedAt(Math.floor(now / 1000))
      .setExpirationTime(Math.ceil(lease.expiresAt / 1000))
      .sign(this.key);
  }
}

/**
 * Verifies a lease token offline against the server's public key. `now` lets a
 * client judge expiry on its own clock (with tolerance for skew).
 */
export async function verifyLeaseToken(
  token: string,
  publicJwk: JWK,
  options: { now?: number; clockToleranceSec?: number } = {},
): Promise<LeaseTokenClaims> {
  try {
    const key = await importEd25519(publicJwk);
    const { payload } = await jwtVerify(token, key, {
      algorithms: ['EdDSA'],
      typ: LEASE_TOKEN_TYPE,
      issuer: 'floatd',
      currentDate: options.now === undefined ? undefined : new Date(options.now),
      clockTolerance: options.clockToleranceSec ?? 300,
    });
    const str = (k: string) => {
      const v = payload[k];
      if (typeof v !== 'string') throw new Error(`claim "${k}" missing`);
      return v;
    };
    return {
      leaseId: payload.jti ?? str('jti'),
      product: str('product'),
      user: str('user'),
      host: str('host'),
      instance: str('instance'),
      pool: typeof payload['pool'] === 'string' ? payload['pool'] : null,
      issuedAt: (payload.iat ?? 0) * 1000,
      expiresAt: (payload.exp ?? 0) * 1000,
    };
  } catch (err) {
    throw new FloatdError('TOKEN_INVALID', `lease token rejected: ${(err as Error).message}`);
  }
}
