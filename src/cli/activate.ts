import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { thumbprint } from '../adapters/crypto/keys.js';
import { hostFingerprint, readHostComponents } from '../adapters/host/fingerprint.js';
import { readVendorKeyFiles, recordedLicensingSettings } from '../app/data-dir.js';
import { openStore } from '../app/stores.js';
import { withActivation } from '../app/inspect.js';
import { resolveId } from '../app/licensing.js';
import { HOST_COMPONENTS, hostBindingProblem } from '../domain/activation.js';
import { FloatdError } from '../domain/errors.js';
import type { LicenseKey } from '../domain/license.js';
import type { JWK } from 'jose';
import { activateEvaluation } from './activate-evaluation.js';
import { CONFIG_FLAGS, configFrom, parse, refuseVendorKeyFlag, table, type Io } from './common.js';

export const ACTIVATE_USAGE = `floatd activate KEY_ID [--proxy URL]         activate a license key online with the vendor's activation service
floatd activate KEY_ID --offline-request FILE  write an activation request to send the vendor (no network needed)
floatd activate --offline-response FILE        install the vendor's answer to it
floatd activate --evaluation [--proxy URL]   register the evaluation with the vendor, where its product file asks for it
floatd activate --evaluation --offline-request FILE | --offline-response FILE   the same by request file
floatd deactivate KEY_ID [--proxy URL]       free the key's activation at the vendor; this server stops granting from it
floatd deactivate KEY_ID --offline-request FILE  stop granting here and write the signed proof the vendor frees the slot with
floatd fingerprint [--json]                  show the host components activations bind to (hashed per vendor key)
  each takes [--config FILE] [--data-dir DIR]; --proxy http://[user:password@]host:port overrides activation.proxy and HTTPS_PROXY`;

function readInput(file: string, what: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new FloatdError('INPUT_INVALID', `cannot read the ${what} ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message}`);
  }
}

function writeOutput(file: string, text: string, io: Io): void {
  if (file === '-') return io.out(text);
  try {
    writeFileSync(file, text, { mode: 0o644 });
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', `cannot write ${file}: ${(err as Error).message}`);
  }
}

function findKey(keys: readonly LicenseKey[], given: string): LicenseKey {
  const id = resolveId(given, keys.map((k) => k.id), 'installed license key', 'LICENSE_KEY_NOT_FOUND');
  return keys.find((k) => k.id === id)!;
}

function proxyFlag(value: string | undefined, fallback: string | null): string | null {
  if (value === undefined) return fallback;
  if (value === '' || value === 'none') return null;
  try {
    const url = new URL(value.includes('://') ? value : `http://${value}`);
    if (url.protocol !== 'http:') throw new Error('scheme');
    return url.href;
  } catch {
    throw new FloatdError('USAGE', `--proxy must be an http:// proxy URL such as http://user:password@proxy.example.com:3128; got "${value}"`);
  }
}

export async function activate(args: string[], io: Io): Promise<number> {
  refuseVendorKeyFlag(args, 'floatd activate');
  const { values, positionals } = parse(args, { ...CONFIG_FLAGS, proxy: { type: 'string' }, 'offline-request': { type: 'string' }, 'offline-response': { type: 'string' }, evaluation: { type: 'boolean' } }, true);
  const config = configFrom(io, values);
  const clock = new SystemClock();
  if (values.evaluation === true) {
    if (positionals.length > 0) throw new FloatdError('USAGE', 'activate --evaluation takes no license key id');
    return activateEvaluation(config, clock, { proxy: proxyFlag(values.proxy, config.activation.proxy), request: values['offline-request'], response: values['offline-response'] }, io, (f) => readInput(f, 'evaluation response'), (f, t) => writeOutput(f, t, io));
  }
  if (values['offline-response'] !== undefined) {
    if (positionals.length > 0 || values['offline-request'] !== undefined) throw new FloatdError('USAGE', 'activate --offline-response FILE takes no key id and no --offline-request');
    const text = readInput(values['offline-response'], 'activation response');
    const outcome = await withActivation(config, clock, (a, keys) => a.installResponse(text, keys));
    io.out(`license key ${outcome.keyId} activated (activation ${outcome.activationId}, offline)${outcome.changed.length > 0 ? `; changed since the request, tolerated: ${outcome.changed.join(', ')}` : ''}`);
    return 0;
  }
  if (positionals.length !== 1) throw new FloatdError('USAGE', `activate takes one license key ID (see floatd license list)\n${ACTIVATE_USAGE}`);
  if (values['offline-request'] !== undefined) {
    const file = values['offline-request'];
    const { text, key } = await withActivation(config, clock, async (a, keys) => {
      const key = findKey(keys, positionals[0]!);
      return { text: await a.offlineRequest(key), key };
    });
    writeOutput(file, text, io);
    if (file !== '-') io.out(`wrote the activation request for license key ${key.id} to ${file}: send it to the vendor, then install the response with floatd activate --offline-response FILE`);
    return 0;
  }
  const outcome = await withActivation(config, clock, async (a, keys) => a.activateOnline(findKey(keys, positionals[0]!), proxyFlag(values.proxy, config.activation.proxy)));
  io.out(
    `license key ${outcome.keyId} activated (activation ${outcome.activationId})${outcome.created ? '' : ': this host already held it, no further activation was used'}` +
      `${outcome.changed.length > 0 ? `; changed, tolerated: ${outcome.changed.join(', ')}` : ''}`,
  );
  return 0;
}

export async function deactivate(args: string[], io: Io): Promise<number> {
  refuseVendorKeyFlag(args, 'floatd deactivate');
  const { values, positionals } = parse(args, { ...CONFIG_FLAGS, proxy: { type: 'string' }, 'offline-request': { type: 'string' } }, true);
  if (positionals.length !== 1) throw new FloatdError('USAGE', `deactivate takes one license key ID\n${ACTIVATE_USAGE}`);
  const config = configFrom(io, values);
  const clock = new SystemClock();
  if (values['offline-request'] !== undefined) {
    const file = values['offline-request'];
    if (file !== '-' && !existsSync(dirname(file))) throw new FloatdError('USAGE', `--offline-request ${file}: the folder ${dirname(file)} does not exist`);
    const { text, key } = await withActivation(config, clock, async (a, keys) => {
      const key = findKey(keys, positionals[0]!);
      return { text: await a.deactivateOffline(key), key };
    });
    writeOutput(file, text, io);
    if (file !== '-') io.out(`license key ${key.id} deactivated here: this server grants no more seats from it. Send ${file} to the vendor (floatd-vendor activation release) to free the activation for another server`);
    return 0;
  }
  const r = await withActivation(config, clock, async (a, keys) => {
    const key = findKey(keys, positionals[0]!);
    return { ...(await a.deactivateOnline(key, proxyFlag(values.proxy, config.activation.proxy))), key };
  });
  io.out(`license key ${r.key.id} deactivated (activation ${r.activationId} freed at the vendor): this server grants no more seats from it, and the key can be activated on another server`);
  return 0;
}

/** The vendor keys the server trusts: as it recorded them, or from this command's config before the first start. */
async function vendorKeys(config: ReturnType<typeof configFrom>): Promise<{ jwks: JWK[]; hostRoot: string }> {
  if (existsSync(config.dbFile)) {
    const store = openStore(config, 'read');
    try {
      const s = await recordedLicensingSettings(store, config);
      return { jwks: [...s.vendorPublicKeys], hostRoot: s.activation?.hostRoot ?? config.hostRoot };
    } finally {
      store.close();
    }
  }
  return { jwks: readVendorKeyFiles(config), hostRoot: config.hostRoot };
}

export async function fingerprint(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, { ...CONFIG_FLAGS, json: { type: 'boolean' } });
  const config = configFrom(io, values);
  const { jwks, hostRoot } = await vendorKeys(config);
  let dir = config.dataDir;
  while (!existsSync(dir) && dirname(dir) !== dir) dir = dirname(dir);
  if (!statSync(dir).isDirectory()) throw new FloatdError('DATA_DIR_INVALID', `the data directory ${config.dataDir} is a file, not a folder`, { setting: 'dataDir' });
  const raw = readHostComponents(hostRoot, dir);
  const readable = HOST_COMPONENTS.filter((c) => c !== 'host-identity' && raw.values[c] !== undefined);
  const problem = hostBindingProblem(readable);
  const vendors = await Promise.all(
    jwks.map(async (jwk) => {
      const kid = await thumbprint(jwk);
      return { vendorKey: kid, components: hostFingerprint(hostRoot, dir, kid).components };
    }),
  );
  const bindableText =
    problem === null
      ? `${readable.length} host component(s) readable: a binding can be made; ${readable.length >= 3 ? 'it keeps matching while at most one of them changes' : 'it keeps matching while both stay the same'}`
      : `${problem}: only keys issued with --container-binding can be activated here (bound to DATA/host-identity; keep the data directory on a persistent volume)`;
  const shown = HOST_COMPONENTS.filter((c) => c !== 'host-identity' || raw.values[c] !== undefined);
  const components = shown.map((c) => {
    const u = raw.unreadable.find((x) => x.component === c);
    return { component: c, readable: raw.values[c] !== undefined, reason: raw.values[c] !== undefined ? null : (u?.reason ?? 'not read') };
  });
  if (values.json) {
    io.out(JSON.stringify({ hostRoot, dataDir: config.dataDir, components, readable: HOST_COMPONENTS.filter((c) => raw.values[c] !== undefined), unreadable: raw.unreadable, bindable: problem === null, vendors }, null, 2));
    return 0;
  }
  const rows = components.map((c) => [c.component, c.readable ? 'readable' : `unreadable: ${c.reason}`, ...vendors.map((v) => v.components[c.component] ?? '-')]);
  io.out(`host root: ${hostRoot}\ndata directory: ${config.dataDir}`);
  io.out(table(rows, ['COMPONENT', 'STATE', ...vendors.map((v) => `HASH FOR VENDOR KEY ${v.vendorKey.slice(0, 12)}…`)]));
  io.out(bindableText);
  if (vendors.length === 0) io.out('no vendor public key is configured yet, so no hashes are shown (they are keyed per vendor key; raw ids are never shown or sent)');
  return 0;
}

