import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { JWK } from 'jose';
import { createLogger } from '../../../../src/adapters/log/logger.js';
import { PRIVATE_KEY_META, VendorStore } from '../store/vendor-store.js';
import { parseHostPort } from '../../../../src/config/listen-address.js';
import { proofOfFile, requestOfFile, responseFile } from '../../../../src/adapters/crypto/activation-files.js';
import { SHIPPED_PRODUCT_FILE, writeProductFile } from '../../../../src/adapters/crypto/product-file.js';
import { releaseByVendor, VendorActivations } from '../app/vendor-activations.js';
import { startVendorService } from '../app/vendor-service.js';
import { SystemClock } from '../../../../src/adapters/clock/system-clock.js';
import { newEd25519KeyPair, readJwkFile, writeSecretFile } from '../../../../src/adapters/crypto/keys.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { intFlag, parse, table, type Io } from '../../../../src/adapters/console/command-line.js';
import { vendorIssue } from './issue.js';
import { evaluationActivationFlags, respondToEvaluation, vendorEvaluationsList } from './vendor-evaluation.js';

export const VENDOR_USAGE = `floatd-vendor keygen --out DIR [--force]
floatd-vendor issue --private-key FILE --licensee NAME --product NAME --seats N
                     [--expires ISO-DATE] [--not-before ISO-DATE] [--max-lease-seconds N] [--feature NAME]...
                     [--data-dir VDIR] [--activation required --activations N [--activation-url URL] [--container-binding]]
  A date alone is a whole day in UTC (--expires: its end; --not-before: its start); without --expires the key never expires.
  --data-dir records the key in the vendor's activation database (needed for keys that need activation).
floatd-vendor issue --private-key FILE --licensee NAME --evaluation-extension --days N [--seats N]   a key adding N days to the evaluation
floatd-vendor product --private-key FILE --product NAME... --evaluation-seats N --evaluation-days N --out FILE
                       [--evaluation-activation required [--activation-url URL]]
  the vendor-signed product file: your key, your products, the most evaluation there is (operators may only lower it);
  --evaluation-activation required: evaluation grants nothing until registered with your activation service (once per host)
floatd-vendor serve --data-dir VDIR --private-key FILE [--listen HOST:PORT] [--tls-cert FILE --tls-key FILE] [--rate-limit N]
  the activation service (default listen 0.0.0.0:8999; --rate-limit: requests a minute per address, default 60)
floatd-vendor activation respond --data-dir VDIR [--private-key FILE] REQUEST --out RESPONSE   answer an offline activation (or evaluation) request
floatd-vendor activation release --data-dir VDIR [--private-key FILE] PROOF   free an activation on an offline deactivation proof; prints a signed receipt
floatd-vendor activations list --data-dir VDIR [--key ID] [--json]
floatd-vendor activations release --data-dir VDIR ACTIVATION_ID   free an activation whose server is gone for good
floatd-vendor evaluations list --data-dir VDIR [--json]   the evaluations registered with the service, one per host and product file`;

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

/** floatd-vendor keygen: the vendor's Ed25519 key pair, the private half readable by its owner only. */
async function vendorKeygen(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { out: { type: 'string' }, force: { type: 'boolean' } });
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

/** floatd-vendor SUBCOMMAND ...: the vendor's tools. */
export async function vendor(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  if (sub === 'keygen') return vendorKeygen(rest, io);
  if (sub === 'product') return vendorProduct(rest, io);
  if (sub === 'serve') return vendorServe(rest, io);
  if (sub === 'activation') return vendorActivation(rest, io);
  if (sub === 'activations') return vendorList(rest, io);
  if (sub === 'evaluations') return vendorEvaluationsList(rest, io);
  if (sub === 'issue') return vendorIssue(rest, io);
  throw new FloatdError('USAGE', `vendor: unknown subcommand "${sub ?? ''}"\n${VENDOR_USAGE}`);
}
