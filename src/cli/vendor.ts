import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { newEd25519KeyPair, readJwkFile, writeSecretFile } from '../adapters/crypto/keys.js';
import { issueLicenseKey } from '../adapters/crypto/license-keys.js';
import { FloatdError } from '../domain/errors.js';
import { intFlag, parse, type Io } from './common.js';

export const VENDOR_USAGE = `floatd vendor keygen --out DIR [--force]
floatd vendor issue --private-key FILE --licensee NAME --product NAME --seats N
                    [--expires ISO-DATE] [--not-before ISO-DATE] [--max-lease-seconds N] [--feature NAME]...`;

function dateFlag(value: string | undefined, name: string): Date | undefined {
  if (value === undefined) return undefined;
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw new FloatdError('USAGE', `--${name} must be an ISO date such as 2027-12-31 or 2027-12-31T23:59:59Z; got "${value}"`);
  return new Date(t);
}

export async function vendor(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'keygen') {
    const { values } = parse(rest, { out: { type: 'string' }, force: { type: 'boolean' } });
    if (values.out === undefined) throw new FloatdError('USAGE', 'vendor keygen needs --out DIR');
    const privateFile = join(values.out, 'vendor-private.jwk');
    const publicFile = join(values.out, 'vendor-public.jwk');
    if (!values.force && (existsSync(privateFile) || existsSync(publicFile))) {
      throw new FloatdError('USAGE', `${privateFile} or ${publicFile} already exists; pass --force to replace the vendor key pair (keys issued with the old one stop verifying)`);
    }
    const pair = await newEd25519KeyPair();
    writeSecretFile(privateFile, `${JSON.stringify(pair.privateJwk, null, 2)}\n`);
    writeSecretFile(publicFile, `${JSON.stringify(pair.publicJwk, null, 2)}\n`);
    io.out(`wrote ${privateFile} (keep it secret) and ${publicFile} (give it to customers' servers); key id ${pair.publicJwk.kid}`);
    return 0;
  }
  if (sub === 'issue') {
    const { values } = parse(rest, {
      'private-key': { type: 'string' },
      licensee: { type: 'string' },
      product: { type: 'string' },
      seats: { type: 'string' },
      expires: { type: 'string' },
      'not-before': { type: 'string' },
      'max-lease-seconds': { type: 'string' },
      feature: { type: 'string', multiple: true },
    });
    for (const required of ['private-key', 'licensee', 'product', 'seats'] as const) {
      if (values[required] === undefined) throw new FloatdError('USAGE', `vendor issue needs --${required}`);
    }
    let jwk;
    try {
      jwk = readJwkFile(values['private-key']!, 'private');
    } catch (err) {
      throw new FloatdError('USAGE', `--private-key: ${(err as Error).message}`);
    }
    const token = await issueLicenseKey(jwk, {
      licensee: values.licensee!,
      product: values.product!,
      seats: intFlag(values.seats, 'seats', 1)!,
      expires: dateFlag(values.expires, 'expires'),
      notBefore: dateFlag(values['not-before'], 'not-before'),
      maxLeaseSeconds: intFlag(values['max-lease-seconds'], 'max-lease-seconds', 30),
      features: values.feature,
      now: new SystemClock().now(),
    });
    io.out(token);
    return 0;
  }
  throw new FloatdError('USAGE', `vendor: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
}
