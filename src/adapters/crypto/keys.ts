import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type CryptoKey } from 'jose';
import { FloatdError } from '../../domain/errors.js';

export interface KeyPairJwk {
  readonly privateJwk: JWK;
  readonly publicJwk: JWK;
}

/** A new Ed25519 key pair as JWKs, each carrying its thumbprint as `kid`. */
export async function newEd25519KeyPair(): Promise<KeyPairJwk> {
  const { privateKey, publicKey } = await generateKeyPair('EdDSA', { crv: 'Ed25519', extractable: true });
  const publicJwk = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = await exportJWK(privateKey);
  return {
    privateJwk: { ...privateJwk, kid, alg: 'EdDSA', use: 'sig' },
    publicJwk: { ...publicJwk, kid, alg: 'EdDSA', use: 'sig' },
  };
}

export function publicPart(jwk: JWK): JWK {
  const { d: _d, ...pub } = jwk;
  return pub;
}

/** Reads a JWK file, naming the file in any error. */
export function readJwkFile(file: string, want: 'private' | 'public'): JWK {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', `${file}: not a readable JSON Web Key (${(err as Error).message})`);
  }
  const jwk = parsed as JWK;
  if (typeof jwk !== 'object' || jwk === null || jwk.kty !== 'OKP' || jwk.crv !== 'Ed25519' || typeof jwk.x !== 'string') {
    throw new FloatdError('INPUT_INVALID', `${file}: not an Ed25519 JSON Web Key (expected kty "OKP", crv "Ed25519")`);
  }
  if (want === 'private' && typeof jwk.d !== 'string') throw new FloatdError('INPUT_INVALID', `${file}: is a public key; a private key is needed`);
  if (want === 'public' && jwk.d !== undefined) {
    throw new FloatdError('INPUT_INVALID', `${file}: is a private key; give the public key (vendor-public.jwk): a vendor's private key must never leave the vendor`);
  }
  return want === 'public' ? publicPart(jwk) : jwk;
}

export function writeSecretFile(file: string, content: string): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, content, { mode: 0o600 });
  chmodSync(file, 0o600);
}

export async function thumbprint(jwk: JWK): Promise<string> {
  return calculateJwkThumbprint(publicPart(jwk));
}

export async function importEd25519(jwk: JWK): Promise<CryptoKey> {
  return (await importJWK({ ...jwk, alg: 'EdDSA' }, 'EdDSA')) as CryptoKey;
}

/** The server's own signing key, as made at its first start; clients that pinned its public key trust it. */
export async function readServerKey(file: string): Promise<KeyPairJwk> {
  const privateJwk = readJwkFile(file, 'private');
  const kid = privateJwk.kid ?? (await thumbprint(privateJwk));
  return { privateJwk: { ...privateJwk, kid }, publicJwk: { ...publicPart(privateJwk), kid } };
}

/** Makes the server's signing key (mode 0600, whatever the umask). */
export async function createServerKey(file: string): Promise<KeyPairJwk> {
  const pair = await newEd25519KeyPair();
  writeSecretFile(file, `${JSON.stringify(pair.privateJwk, null, 2)}\n`);
  return pair;
}
