import { createPrivateKey, sign as cryptoSign, type JsonWebKey, type KeyObject } from 'node:crypto';
import { jwtVerify, type JWK } from 'jose';
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

const b64url = (text: string): string => Buffer.from(text).toString('base64url');

/**
 * Signs lease tokens with the server's Ed25519 key: a compact JWS (header,
 * payload and signature, each base64url, joined by dots) made synchronously
 * with node:crypto on a KeyObject, the protected header encoded once. The
 * tokens are byte for byte what jose's SignJWT makes of the same claims, and
 * jose verifies them (verifyLeaseToken); signing without a promise per token
 * keeps the reply path of a batch synchronous.
 */
export class LeaseTokenSigner {
  private readonly encodedHeader: string;

  private constructor(
    private readonly key: KeyObject,
    kid: string,
  ) {
    this.encodedHeader = b64url(JSON.stringify({ alg: 'EdDSA', typ: LEASE_TOKEN_TYPE, kid }));
  }

  static async create(privateJwk: JWK): Promise<LeaseTokenSigner> {
    // jose checks the key the way it always has (an Ed25519 private JWK), and names what is wrong.
    await importEd25519(privateJwk);
    return new LeaseTokenSigner(createPrivateKey({ key: privateJwk as JsonWebKey, format: 'jwk' }), privateJwk.kid ?? '');
  }

  /** `now` is when the lease was (re)granted; `exp` is the lease's expiry. */
  sign(lease: Lease, now: number): string {
    const claims = {
      product: lease.product,
      user: lease.user,
      host: lease.host,
      instance: lease.instance,
      pool: lease.poolId,
      jti: lease.id,
      iss: 'floatd',
      iat: Math.floor(now / 1000),
      exp: Math.ceil(lease.expiresAt / 1000),
    };
    const signingInput = `${this.encodedHeader}.${b64url(JSON.stringify(claims))}`;
    return `${signingInput}.${cryptoSign(null, Buffer.from(signingInput), this.key).toString('base64url')}`;
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
