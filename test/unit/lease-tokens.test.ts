import { SignJWT, decodeProtectedHeader } from 'jose';
import { describe, expect, it } from 'vitest';
import { importEd25519, newEd25519KeyPair } from '../../src/adapters/crypto/keys.js';
import { LEASE_TOKEN_TYPE, LeaseTokenSigner, verifyLeaseToken } from '../../src/adapters/crypto/lease-tokens.js';
import type { Lease } from '../../src/domain/lease.js';

const lease: Lease = {
  id: '6f1c2f9e-0d7b-4a53-9a57-2b1d1c7e9a10',
  poolId: 'key-1',
  product: 'cad',
  user: 'alice "ä" \\ 東京',
  host: 'ws-7',
  instance: 'cad-1',
  remote: '127.0.0.1',
  listener: 'main',
  grantedAt: 1_700_000_000_000,
  renewedAt: 1_700_000_100_500,
  expiresAt: 1_700_001_900_500,
  leaseMs: 1_800_000,
};

describe('lease tokens', () => {
  it('are byte for byte the compact JWS jose makes of the same claims (Ed25519 signatures are deterministic)', async () => {
    const keys = await newEd25519KeyPair();
    const token = (await LeaseTokenSigner.create(keys.privateJwk)).sign(lease, lease.renewedAt);
    const jose = await new SignJWT({ product: lease.product, user: lease.user, host: lease.host, instance: lease.instance, pool: lease.poolId })
      .setProtectedHeader({ alg: 'EdDSA', typ: LEASE_TOKEN_TYPE, kid: keys.privateJwk.kid! })
      .setJti(lease.id)
      .setIssuer('floatd')
      .setIssuedAt(Math.floor(lease.renewedAt / 1000))
      .setExpirationTime(Math.ceil(lease.expiresAt / 1000))
      .sign(await importEd25519(keys.privateJwk));
    expect(token).toBe(jose);
    expect(decodeProtectedHeader(token)).toEqual({ alg: 'EdDSA', typ: LEASE_TOKEN_TYPE, kid: keys.privateJwk.kid });
  });

  it('verify with jose against the public key, and a token changed in any part is rejected', async () => {
    const keys = await newEd25519KeyPair();
    const token = (await LeaseTokenSigner.create(keys.privateJwk)).sign(lease, lease.renewedAt);
    const claims = await verifyLeaseToken(token, keys.publicJwk, { now: lease.renewedAt });
    expect(claims).toEqual({
      leaseId: lease.id,
      product: 'cad',
      user: lease.user,
      host: 'ws-7',
      instance: 'cad-1',
      pool: lease.poolId,
      issuedAt: 1_700_000_100_000,
      expiresAt: 1_700_001_901_000,
    });
    const [h, p, s] = token.split('.') as [string, string, string];
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), user: 'mallory' })).toString('base64url');
    await expect(verifyLeaseToken(`${h}.${forged}.${s}`, keys.publicJwk, { now: lease.renewedAt })).rejects.toMatchObject({ code: 'TOKEN_INVALID' });
    const other = await newEd25519KeyPair();
    await expect(verifyLeaseToken(token, other.publicJwk, { now: lease.renewedAt })).rejects.toMatchObject({ code: 'TOKEN_INVALID' });
  });

  it('a key that is not an Ed25519 private key is refused when the signer is made', async () => {
    const keys = await newEd25519KeyPair();
    await expect(LeaseTokenSigner.create(keys.publicJwk)).rejects.toThrow();
  });
});
