import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JWK } from 'jose';
import { createLogger } from '../adapters/log/logger.js';
import { VendorStore } from '../adapters/sqlite/vendor-store.js';
import { parseHostPort } from '../config/listen-address.js';
import { proofOfFile, requestOfFile, responseFile } from '../adapters/crypto/activation-files.js';
import { SHIPPED_PRODUCT_FILE } from '../app/data-dir.js';
import { writeProductFile } from '../adapters/crypto/product-file.js';
import { releaseByVendor, VendorActivations } from '../app/vendor-activations.js';
import { startVendorService } from '../app/vendor-service.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { newEd25519KeyPair, readJwkFile, writeSecretFile } from '../adapters/crypto/keys.js';
import { issueLicenseKey } from '../adapters/crypto/license-keys.js';
import { FloatdError } from '../domain/errors.js';
import { intFlag, parse, table, type Io } from './common.js';
import { evaluationActivationFlags, respondToEvaluation, vendorEvaluationsList } from './vendor-evaluation.js';

export const VENDOR_USAGE = `floatd vendor keygen --out DIR [--force]
floatd vendor issue --private-key FILE --licensee NAME --product NAME --seats N
                    [--expires ISO-DATE] [--not-before ISO-DATE] [--max-lease-seconds N] [--feature NAME]...
                    [--data-dir VDIR] [--activation required --activations N [--activation-url URL] [--container-binding]]
  A date alone is a whole day in UTC (--expires: its end; --not-before: its start); without --expires the key never expires.
  --data-dir records the key in the vendor's activation database (needed for keys that need activation).
floatd vendor issue --private-key FILE --licensee NAME --evaluation-extension --days N [--seats N]   a key adding N days to the evaluation
floatd vendor product --private-key FILE --product NAME... --evaluation-seats N --evaluation-days N --out FILE
                      [--evaluation-activation required [--activation-url URL]]
  the vendor-signed product file: your key, your products, the most evaluation there is (operators may only lower it);
  --evaluation-activation required: evaluation grants nothing until registered with your activation service (once per host)
floatd vendor serve --data-dir VDIR --private-key FILE [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--rate-limit N]
  the activation service (default listen 0.0.0.0:8999; --rate-limit: requests a minute per address, default 60)
floatd vendor activation respond --data-dir VDIR [--private-key FILE] REQUEST --out RESPONSE   answer an offline activation (or evaluation) request
floatd vendor activation release --data-dir VDIR [--private-key FILE] PROOF   free an activation on an offline deactivation proof; prints a signed receipt
floatd vendor activations list --data-dir VDIR [--key ID] [--json]
floatd vendor activations release --data-dir VDIR ACTIVATION_ID   free an activation whose server is gone for good
floatd vendor evaluations list --data-dir VDIR [--json]   the evaluations registered with the service, one per host and product file`;

const PRIVATE_KEY_META = 'privateKeyFile';
/** The activation service's port: apart from floatd's own (8989 NDJSON, 8990 web, 8991 NDJSON inside TLS). */
export const VENDOR_PORT = 8999;

function readPrivateKey(file: string): JWK {
  try {
    return readJwkFile(file, 'private');
  } catch (err) {
    throw new FloatdError('USAGE', `--private-key: ${(err as Error).message}`);
  }
}

/** The vendor's signing key: --private-key, or the one the vendor data directory recorded when keys were issued or served with it. */
function vendorPrivateKey(store: VendorStore, given: string | undefined, vdir: string): JWK {
  if (given !== undefined) {
    const jwk = readPrivateKey(given);
    store.setMeta(PRIVATE_KEY_META, resolve(given));
    return jwk;
  }
  const recorded = store.getMeta(PRIVATE_KEY_META);
  if (recorded === undefined) throw new FloatdError('USAGE', `${vdir} has no private key recorded yet: give --private-key FILE`);
  return readPrivateKey(recorded);
}

function readFileArg(file: string, what: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FloatdError('INPUT_INVALID', `cannot read the ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
}

async function vendorActivation(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(rest, { 'data-dir': { type: 'string' }, 'private-key': { type: 'string' }, out: { type: 'string' } }, true);
  const vdir = values['data-dir'];
  if (vdir === undefined) throw new FloatdError('USAGE', `vendor activation ${sub ?? ''} needs --data-dir VDIR (the activation database)`);
  if (positionals.length !== 1) throw new FloatdError('USAGE', `vendor activation ${sub ?? ''} takes one file\n${VENDOR_USAGE}`);
  if (sub !== 'respond' && sub !== 'release') throw new FloatdError('USAGE', `vendor activation: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
  if (sub === 'respond' && values.out === undefined) throw new FloatdError('USAGE', 'vendor activation respond needs --out RESPONSE');
  const text = readFileArg(positionals[0]!, sub === 'respond' ? 'activation request' : 'deactivation proof');
  const store = VendorStore.open(vdir);
  try {
    const clock = new SystemClock();
    const activations = new VendorActivations(store, clock, vendorPrivateKey(store, values['private-key'], vdir));
    if (sub === 'respond') {
      const evaluation = await respondToEvaluation(store, clock, vendorPrivateKey(store, values['private-key'], vdir), text);
      if (evaluation !== null) {
        writeFileSync(values.out!, evaluation.file, { mode: 0o644 });
        const g = evaluation.granted;
        io.out(`wrote ${values.out}: evaluation ${g.evaluationId} of ${g.products.join(', ')} from ${new Date(g.startedAt).toISOString()} to ${new Date(g.endsAt).toISOString()}${g.created ? '' : ' (this host registered it before: the same period)'}; send it to the customer for floatd activate --evaluation --offline-response FILE`);
        return 0;
      }
      const g = await activations.activate(await requestOfFile(text), 'offline', null);
      writeFileSync(values.out!, responseFile(g, clock.now()), { mode: 0o644 });
      io.out(`wrote ${values.out}: activation ${g.activationId} of license key ${g.keyId}${g.created ? '' : ' (the same host already held it; no further activation used)'}; send it to the customer for floatd activate --offline-response FILE`);
      return 0;
    }
    const r = await activations.release(proofOfFile(text), 'offline');
    io.out(JSON.stringify({ floatd: 'deactivation-receipt', key: r.keyId, activation: r.activationId, releasedAt: new Date(r.releasedAt).toISOString(), receipt: r.receipt }, null, 2));
    io.err(`activation ${r.activationId} of license key ${r.keyId} released: the key can be activated on another server`);
    return 0;
  } finally {
    store.close();
  }
}

async function vendorProduct(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    'private-key': { type: 'string' },
    out: { type: 'string' },
    product: { type: 'string', multiple: true },
    'evaluation-seats': { type: 'string' },
    'evaluation-days': { type: 'string' },
    'evaluation-activation': { type: 'string' },
    'activation-url': { type: 'string' },
  });
  if (values['private-key'] === undefined || values.out === undefined) throw new FloatdError('USAGE', 'vendor product needs --private-key FILE and --out FILE');
  if (values.product === undefined || values.product.length === 0) throw new FloatdError('USAGE', 'vendor product needs --product NAME (once per product)');
  const seats = intFlag(values['evaluation-seats'] ?? '0', 'evaluation-seats', 0)!;
  const days = intFlag(values['evaluation-days'] ?? '0', 'evaluation-days', 0)!;
  if (seats > 1_000_000 || days > 3650) throw new FloatdError('USAGE', '--evaluation-seats is at most 1000000 and --evaluation-days at most 3650');
  const registration = evaluationActivationFlags(values['evaluation-activation'], values['activation-url']);
  const text = await writeProductFile(readPrivateKey(values['private-key']), { products: values.product, evaluation: { seats, days }, evaluationActivation: registration, now: new SystemClock().now() });
  writeFileSync(values.out, text, { mode: 0o644 });
  io.out(`wrote ${values.out}: ${values.product.join(', ')}; evaluation ${seats === 0 || days === 0 ? 'off' : `${seats} seat(s) for ${days} day(s)`}${registration === null ? '' : `, registered with the activation service ${registration.url === null ? 'by request file' : `at ${registration.url}`} before it grants`}. Ship it beside floatd as ${SHIPPED_PRODUCT_FILE}, or have customers install it with floatd trust FILE`);
  return 0;
}

async function vendorServe(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    'data-dir': { type: 'string' },
    'private-key': { type: 'string' },
    listen: { type: 'string' },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'rate-limit': { type: 'string' },
    'log-level': { type: 'string' },
  });
  if (values['data-dir'] === undefined) throw new FloatdError('USAGE', 'vendor serve needs --data-dir VDIR');
  if (values['private-key'] === undefined) throw new FloatdError('USAGE', 'vendor serve needs --private-key FILE');
  if ((values['tls-cert'] === undefined) !== (values['tls-key'] === undefined)) throw new FloatdError('USAGE', 'vendor serve takes --tls-cert and --tls-key together');
  const jwk = readPrivateKey(values['private-key']);
  let listen;
  try {
    listen = parseHostPort(values.listen ?? `0.0.0.0:${VENDOR_PORT}`, VENDOR_PORT);
  } catch (err) {
    throw new FloatdError('USAGE', `--listen: ${(err as Error).message}`);
  }
  const store = VendorStore.open(values['data-dir']);
  store.setMeta(PRIVATE_KEY_META, resolve(values['private-key']));
  store.close();
  const logger = createLogger({ level: values['log-level'] ?? 'info', destination: 'stdout', format: 'json' });
  // The signal handlers come before the listener: a SIGTERM as soon as the port answers still stops cleanly.
  let signalled: NodeJS.Signals | null = null;
  let wake = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    signalled ??= signal;
    wake();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const service = await startVendorService({
      dataDir: values['data-dir'],
      privateJwk: jwk,
      host: listen.host,
      port: listen.port,
      tls: values['tls-cert'] ? { certFile: values['tls-cert'], keyFile: values['tls-key']! } : null,
      ratePerMinute: intFlag(values['rate-limit'], 'rate-limit', 1),
      logger,
    });
    if (signalled === null) await new Promise<void>((done) => (wake = done));
    logger.info({ signal: signalled }, 'shutting down');
    try {
      await service.stop();
    } catch (err) {
      logger.error({ err }, 'shutdown failed');
      return 1;
    }
    logger.info('stopped');
    return 0;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    logger.flush?.();
    void io;
  }
}

function vendorList(args: string[], io: Io): number {
  const [sub, ...rest] = args;
  if (sub === 'release') {
    const { values, positionals } = parse(rest, { 'data-dir': { type: 'string' } }, true);
    if (values['data-dir'] === undefined || positionals.length !== 1) throw new FloatdError('USAGE', 'vendor activations release needs --data-dir VDIR and one ACTIVATION_ID');
    const store = VendorStore.open(values['data-dir']);
    try {
      const r = releaseByVendor(store, new SystemClock().now(), positionals[0]!);
      io.out(`released activation ${r.id} of license key ${r.keyId} (server key ${r.serverKid}): the key can be activated on another server; the old server stops granting from it at its next re-validation (online activations)`);
      return 0;
    } finally {
      store.close();
    }
  }
  if (sub !== 'list') throw new FloatdError('USAGE', `vendor activations: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
  const { values } = parse(rest, { 'data-dir': { type: 'string' }, key: { type: 'string' }, json: { type: 'boolean' } });
  if (values['data-dir'] === undefined) throw new FloatdError('USAGE', 'vendor activations list needs --data-dir VDIR');
  const store = VendorStore.open(values['data-dir']);
  try {
    if (values.key !== undefined && store.findKey(values.key) === undefined) throw new FloatdError('ACTIVATION_UNKNOWN_KEY', `no license key ${values.key} is recorded in ${values['data-dir']}`);
    const rows = store.listActivations(values.key ?? null).map((a) => {
      const limit = store.findKey(a.keyId)?.activationLimit ?? null;
      return {
        activation: a.id,
        key: a.keyId,
        limit,
        state: a.releasedAt === null ? 'active' : 'released',
        via: a.via,
        serverKey: a.serverKid,
        container: a.container,
        components: Object.keys(a.binding),
        activatedAt: new Date(a.activatedAt).toISOString(),
        lastSeenAt: new Date(a.lastSeenAt).toISOString(),
        releasedAt: a.releasedAt === null ? null : new Date(a.releasedAt).toISOString(),
        releasedVia: a.releasedVia,
      };
    });
    if (values.json) io.out(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) io.out('no activations');
    else io.out(table(rows.map((r) => [r.activation, r.key, r.state, r.via, r.serverKey.slice(0, 16), r.activatedAt, r.releasedAt ?? r.lastSeenAt, r.components.join(',')]), ['ACTIVATION', 'KEY', 'STATE', 'VIA', 'SERVER KEY', 'ACTIVATED', 'LAST SEEN/RELEASED', 'BOUND TO']));
    return 0;
  } finally {
    store.close();
  }
}

const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/**
 * A calendar date or a date-time with its zone, checked strictly (2027-02-30 is
 * an error, not 2 March). A date alone means the start of that day (UTC) for
 * --not-before and the end of that day (UTC) for --expires, so a key "valid
 * until 2027-12-31" still works all of that day.
 */
export function dateFlag(value: string | undefined, name: string, edge: 'start' | 'end'): Date | undefined {
  if (value === undefined) return undefined;
  const usage = () =>
    new FloatdError('USAGE', `--${name} must be a date such as 2027-12-31 or a date-time with its zone such as 2027-12-31T18:00:00Z; got "${value}"`);
  const m = DATE_ONLY.exec(value) ?? DATE_TIME.exec(value);
  if (m === null) throw usage();
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCFullYear() !== year || probe.getUTCMonth() !== month - 1 || probe.getUTCDate() !== day) {
    throw new FloatdError('USAGE', `--${name}: ${value.slice(0, 10)} is not a date on the calendar`);
  }
  if (m.length === 4 || m[4] === undefined) return new Date(probe.getTime() + (edge === 'end' ? 86_400_000 : 0));
  const [hour, minute, second] = [Number(m[4]), Number(m[5]), Number(m[6] ?? 0)];
  if (hour > 23 || minute > 59 || second > 59) throw new FloatdError('USAGE', `--${name}: ${value} is not a time of day`);
  const t = Date.parse(value);
  if (Number.isNaN(t)) throw usage();
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
    writeFileSync(publicFile, `${JSON.stringify(pair.publicJwk, null, 2)}\n`, { mode: 0o644 });
    io.out(`wrote ${privateFile} (keep it secret) and ${publicFile} (give it to customers' servers); key id ${pair.publicJwk.kid}`);
    return 0;
  }
  if (sub === 'product') return vendorProduct(rest, io);
  if (sub === 'serve') return vendorServe(rest, io);
  if (sub === 'activation') return vendorActivation(rest, io);
  if (sub === 'activations') return vendorList(rest, io);
  if (sub === 'evaluations') return vendorEvaluationsList(rest, io);
  if (sub === 'issue') {
    const { values } = parse(rest, {
      'data-dir': { type: 'string' },
      activation: { type: 'string' },
      activations: { type: 'string' },
      'activation-url': { type: 'string' },
      'container-binding': { type: 'boolean' },
      'evaluation-extension': { type: 'boolean' },
      days: { type: 'string' },
      'private-key': { type: 'string' },
      licensee: { type: 'string' },
      product: { type: 'string' },
      seats: { type: 'string' },
      expires: { type: 'string' },
      'not-before': { type: 'string' },
      'max-lease-seconds': { type: 'string' },
      feature: { type: 'string', multiple: true },
    });
    const extension = values['evaluation-extension'] === true;
    if (extension) {
      if (values.days === undefined) throw new FloatdError('USAGE', 'vendor issue --evaluation-extension needs --days N: how many days it adds to the evaluation');
      if (values.activation !== undefined) throw new FloatdError('USAGE', '--evaluation-extension keys need no activation');
      values.product ??= 'evaluation';
    } else if (values.days !== undefined) {
      throw new FloatdError('USAGE', '--days goes with --evaluation-extension (a license key\'s own dates are --expires and --not-before)');
    }
    for (const required of (extension ? ['private-key', 'licensee'] : ['private-key', 'licensee', 'product', 'seats']) as Array<'private-key' | 'licensee' | 'product' | 'seats'>) {
      if (values[required] === undefined) throw new FloatdError('USAGE', `vendor issue needs --${required}`);
    }
    let jwk;
    try {
      jwk = readJwkFile(values['private-key']!, 'private');
    } catch (err) {
      throw new FloatdError('USAGE', `--private-key: ${(err as Error).message}`);
    }
    const now = new SystemClock().now();
    const expires = dateFlag(values.expires, 'expires', 'end');
    const notBefore = dateFlag(values['not-before'], 'not-before', 'start');
    if (expires !== undefined && expires.getTime() <= now) {
      throw new FloatdError('USAGE', `--expires ${values.expires} is in the past (${expires.toISOString()}); a key issued with it could never be installed`);
    }
    if (expires !== undefined && notBefore !== undefined && expires <= notBefore) {
      throw new FloatdError('USAGE', `--expires ${values.expires} (${expires.toISOString()}) must be later than --not-before ${values['not-before']} (${notBefore.toISOString()})`);
    }
    const seats = intFlag(values.seats ?? (extension ? '1' : undefined), 'seats', 1)!;
    const extensionDays = intFlag(values.days, 'days', 1);
    if (extensionDays !== undefined && extensionDays > 3650) throw new FloatdError('USAGE', `--days must be a whole number from 1 to 3650; got "${values.days}"`);
    if (seats > 1_000_000) throw new FloatdError('USAGE', `--seats must be a whole number from 1 to 1000000; got "${values.seats}"`);
    const needsActivation = values.activation !== undefined;
    if (needsActivation && values.activation !== 'required') throw new FloatdError('USAGE', `--activation takes "required"; got "${values.activation}"`);
    if (!needsActivation && (values.activations !== undefined || values['activation-url'] !== undefined || values['container-binding'])) {
      throw new FloatdError('USAGE', '--activations, --activation-url and --container-binding go with --activation required');
    }
    if (needsActivation && values.activations === undefined) throw new FloatdError('USAGE', '--activation required needs --activations N: on how many servers at once the key may be activated');
    if (needsActivation && values['data-dir'] === undefined) throw new FloatdError('USAGE', '--activation required needs --data-dir VDIR: the activation database that will answer for the key');
    const limit = intFlag(values.activations, 'activations', 1);
    if (limit !== undefined && limit > 100_000) throw new FloatdError('USAGE', `--activations must be a whole number from 1 to 100000; got "${values.activations}"`);
    const url = values['activation-url'];
    if (url !== undefined && !/^https?:\/\/[^\s]+$/i.test(url)) throw new FloatdError('USAGE', `--activation-url must be an http(s) URL such as https://activate.example.com; got "${url}"`);
    const token = await issueLicenseKey(jwk, {
      evaluationExtension: extension ? { days: extensionDays!, ...(values.seats !== undefined ? { seats } : {}) } : undefined,
      activation: needsActivation ? { limit: limit!, url, containerBinding: values['container-binding'] ?? false } : undefined,
      licensee: values.licensee!,
      product: values.product!,
      seats,
      expires,
      notBefore,
      maxLeaseSeconds: intFlag(values['max-lease-seconds'], 'max-lease-seconds', 30),
      features: values.feature,
      now,
    });
    if (values['data-dir'] !== undefined) {
      const c = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string; exp?: number };
      const store = VendorStore.open(values['data-dir']);
      try {
        store.recordKey({ id: c.jti, licensee: values.licensee!, product: values.product!, seats, activationLimit: limit ?? null, containerBinding: values['container-binding'] ?? false, activationUrl: url ?? null, expiresAt: c.exp === undefined ? null : c.exp * 1000, issuedAt: now, token });
        store.setMeta(PRIVATE_KEY_META, resolve(values['private-key']!));
      } finally {
        store.close();
      }
    }
    io.out(token);
    // The key alone goes to stdout (for pipes); what it means goes to stderr for the person issuing it.
    const from = notBefore === undefined ? 'now' : notBefore.toISOString();
    const until = expires === undefined ? 'never expires (no --expires)' : `expires at ${expires.toISOString()}${DATE_ONLY.test(values.expires!) ? ` (the end of ${values.expires} UTC)` : ''}`;
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString('utf8')) as { jti: string };
    const extras = [
      values['max-lease-seconds'] !== undefined ? `leases of at most ${values['max-lease-seconds']} s` : null,
      values.feature && values.feature.length > 0 ? `features ${values.feature.join(', ')}` : null,
      extension ? `EVALUATION EXTENSION: adds ${extensionDays} day(s) to the evaluation${values.seats !== undefined ? ` and raises it to ${seats} seat(s)` : ''} (floatd license add)` : null,
      needsActivation ? `needs activation on at most ${limit} server(s)${url ? ` at ${url}` : ' (offline only: no --activation-url)'}${values['container-binding'] ? ', container binding allowed' : ''}` : null,
    ].filter((x) => x !== null);
    io.err(`license key ${claims.jti} for ${values.licensee}: ${seats} seat(s) of ${values.product}, valid from ${from}; ${until}${extras.length > 0 ? `; ${extras.join('; ')}` : ''}`);
    return 0;
  }
  throw new FloatdError('USAGE', `vendor: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
}
