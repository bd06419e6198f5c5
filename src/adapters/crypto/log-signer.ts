import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import type { JWK } from 'jose';

/**
 * Signs lease-log checkpoints with the server's Ed25519 key. Synchronous
 * (node:crypto), so a checkpoint is signed inside the transaction that
 * records the entry it covers.
 */
export interface LogSigner {
  /** The key's id (its JWK thumbprint), stored beside each signature. */
  readonly kid: string;
  sign(payload: string): string;
}

export interface LogVerifier {
  readonly kid: string;
  verify(payload: string, signature: string): boolean;
}

export function logSigner(privateJwk: JWK & { kid: string }): LogSigner {
  const key: KeyObject = createPrivateKey({ key: privateJwk as import('node:crypto').JsonWebKey, format: 'jwk' });
  return { kid: privateJwk.kid, sign: (payload) => sign(null, Buffer.from(payload, 'utf8'), key).toString('base64url') };
}

export function logVerifier(publicJwk: JWK & { kid: string }): LogVerifier {
  const { d: _d, ...pub } = publicJwk;
  const key = createPublicKey({ key: pub as import('node:crypto').JsonWebKey, format: 'jwk' });
  return {
    kid: publicJwk.kid,
    verify: (payload, signature) => {
      try {
        return verify(null, Buffer.from(payload, 'utf8'), key, Buffer.from(signature, 'base64url'));
      } catch {
        return false;
      }
    },
  };
}
