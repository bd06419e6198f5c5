import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { JWK } from 'jose';
import type { ActivationSettings, Config } from '../config/config.js';
import { bindable, matchBinding, type HostComponent } from '../domain/activation.js';
import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import type { LeaseStore } from '../domain/ports.js';
import { bindingField, readStatement, signStatement, stringField, timeField, TOKEN_TYPES, verifyStatement } from '../adapters/crypto/activation-tokens.js';
import { publicPart, readJwkFile, thumbprint, type KeyPairJwk } from '../adapters/crypto/keys.js';
import { hostFingerprint } from '../adapters/host/fingerprint.js';
import { trustVendorKeys } from '../adapters/crypto/license-keys.js';
import { postToVendor } from '../adapters/net/vendor-http.js';
import { checkReadableFields } from '../adapters/crypto/activation-files.js';
import { REQUEST_MAX_AGE_MS } from './activation.js';
import { recordedLicensingSettings, type LicensingSettings } from './data-dir.js';
import { openStore } from './stores.js';

/** The vendor's signed registration of this host's evaluation (kept in the data directory). */
export const EVALUATION_REGISTRATION_META = 'evaluation.registration';
/** Offline registration requests this server wrote: nonce → when written, and when answered (JSON). */
export const EVALUATION_REQUESTS_META = 'evaluation.registrationRequests';

/** What the vendor's registration of an evaluation says, verified. Times are epoch ms. */
export interface EvaluationRegistered {
  readonly id: string;
  readonly products: readonly string[];
  readonly serverKid: string;
  readonly binding: Partial<Record<HostComponent, string>>;
  readonly nonce: string;
  readonly startedAt: number;
  readonly endsAt: number;
  readonly issuedAt: number;
}

/** How the evaluation stands against a product file that asks for registration. */
export interface EvaluationRegistrationState {
  /** The product file asks for the evaluation to be registered. */
  readonly required: boolean;
  readonly registered: EvaluationRegistered | null;
  /** Why evaluation grants nothing yet, naming what to run; null when registered or not required. */
  readonly message: string | null;
  /** The vendor's activation service, or null: by request file only. */
  readonly url: string | null;
}

type ProductSettings = NonNullable<LicensingSettings['product']>;

/** The command that registers the evaluation. */
export function registerCommand(url: string | null): string {
  return url === null ? 'floatd activate --evaluation --offline-request FILE' : 'floatd activate --evaluation (or --offline-request FILE without network)';
}

/** The host components an evaluation is bound to, hashed for the vendor: the data directory's filesystem and identity are left out, so a new data directory is the same host. */
export function evaluationBinding(hostRoot: string, dataDir: string, vendorKid: string): Partial<Record<HostComponent, string>> {
  const fp = hostFingerprint(hostRoot, dataDir, vendorKid);
  const components = { ...fp.components };
  delete components['filesystem-uuid'];
  delete components['host-identity'];
  return bindable({ components, unreadable: fp.unreadable }, false);
}

function sameProducts(a: readonly string[], b: readonly string[]): boolean {
  return JSON.stringify([...a].sort()) === JSON.stringify([...b].sort());
}

/** Checks a vendor-signed evaluation registration against the product file's vendor key, and returns what it says. */
export async function verifyEvaluationRegistration(token: string, vendorKey: JWK, what: string): Promise<EvaluationRegistered> {
  const { kid } = readStatement(token, TOKEN_TYPES.evaluation, what);
  const vendorKid = await thumbprint(vendorKey);
  if (kid !== vendorKid) throw new FloatdError('ACTIVATION_FOREIGN', `${what} is signed by vendor key ${String(kid)}, not by the product file's vendor key ${vendorKid}`);
  const p = await verifyStatement(token, TOKEN_TYPES.evaluation, vendorKey, what);
  const products = p['products'];
  if (!Array.isArray(products) || !products.every((x) => typeof x === 'string')) throw new FloatdError('ACTIVATION_FILE_INVALID', `${what}: field "products" must list product names`);
  const startedAt = timeField(p, 'startedAt', what);
  const endsAt = timeField(p, 'endsAt', what);
  if (endsAt < startedAt) throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} ends before it starts`);
  return {
    id: stringField(p, 'jti', what),
    products: products as string[],
    serverKid: stringField(p, 'server', what),
    binding: bindingField(p['fingerprint'], what),
    nonce: stringField(p, 'nonce', what),
    startedAt,
    endsAt,
    issuedAt: timeField(p, 'iat', what),
  };
}

/**
 * Whether evaluation may grant under the product file in force: not required,
 * or registered with the vendor for these products on this host. A stored
 * registration that no longer verifies or matches the host counts as none.
 */
export async function evaluationRegistrationState(store: Pick<LeaseStore, 'getMeta'>, settings: LicensingSettings, hostRoot: string, dataDir: string): Promise<EvaluationRegistrationState> {
  const product = settings.product ?? null;
  const terms = product?.evaluationActivation ?? null;
  if (product === null || terms === null) return { required: false, registered: null, message: null, url: null };
  const how = registerCommand(terms.url);
  const token = await store.getMeta(EVALUATION_REGISTRATION_META);
  if (token === undefined) {
    return { required: true, registered: null, url: terms.url, message: `the vendor's product file asks for the evaluation to be registered with its activation service, and it is not: run ${how}` };
  }
  try {
    const r = await verifyEvaluationRegistration(token, await vendorKeyOf(settings, product), 'the evaluation registration');
    if (!sameProducts(r.products, product.products)) throw new FloatdError('ACTIVATION_FOREIGN', `it is for products ${r.products.join(', ')}, not ${product.products.join(', ')}`);
    const match = matchBinding(r.binding, evaluationBinding(hostRoot, dataDir, product.vendorKid));
    if (!match.ok) throw new FloatdError('ACTIVATION_FOREIGN', `it was made for another host (${match.changed.join(', ')} differ)`);
    return { required: true, registered: r, url: terms.url, message: null };
  } catch (err) {
    return { required: true, registered: null, url: terms.url, message: `the evaluation's registration with the vendor is not valid (${(err as Error).message}): register it again: run ${how}` };
  }
}

async function vendorKeyOf(settings: LicensingSettings, product: ProductSettings): Promise<JWK> {
  // The product file's vendor key is among the trusted keys (underProductTerms adds it); its thumbprint names it.
  const found = (await trustVendorKeys(settings.vendorPublicKeys)).find((t) => t.kid === product.vendorKid);
  if (found === undefined) throw new FloatdError('PRODUCT_FILE_INVALID', `the product file's vendor key ${product.vendorKid} is not among the trusted keys`);
  return found.jwk;
}

export interface RegistrarDeps {
  readonly store: Pick<LeaseStore, 'getMeta' | 'setMeta'>;
  readonly clock: Clock;
  readonly serverKey: KeyPairJwk;
  readonly serverKid: string;
  readonly settings: LicensingSettings;
  readonly hostRoot: string;
  readonly dataDir: string;
  readonly activation: Pick<ActivationSettings, 'proxy' | 'noProxy'>;
  readonly ca?: string | Buffer;
}

function nonce(): string {
  return randomBytes(18).toString('base64url');
}

type Requests = Record<string, { createdAt: number; consumedAt: number | null }>;

/** The server's side of registering its evaluation with the vendor: online, or by request and response file. */
export class EvaluationRegistrar {
  private readonly product: ProductSettings & { evaluationActivation: { url: string | null }; token: string };

  constructor(private readonly deps: RegistrarDeps) {
    const product = deps.settings.product ?? null;
    if (product === null || !product.evaluationActivation) {
      throw new FloatdError('ACTIVATION_NOT_REQUIRED', "the evaluation needs no registration: no vendor's product file asks for it (see floatd status)");
    }
    if (product.token === undefined) throw new FloatdError('DATA_DIR_INVALID', 'the server recorded its product file before registration existed: start the server once, then register', { setting: 'dataDir' });
    this.product = product as RegistrarDeps['settings']['product'] & { evaluationActivation: { url: string | null }; token: string };
  }

  private async request(n: string, createdAt: number) {
    const fingerprint = evaluationBinding(this.deps.hostRoot, this.deps.dataDir, this.product.vendorKid);
    const payload = { product: this.product.token, products: [...this.product.products], serverKey: publicPart(this.deps.serverKey.publicJwk), fingerprint, nonce: n, createdAt };
    return { token: await signStatement(this.deps.serverKey.privateJwk, TOKEN_TYPES.evaluationRequest, payload), payload };
  }

  /** Checks the vendor's registration and stores it; the server obeys it at its next look at the data directory. */
  private async install(token: string, expectNonce: string | null, what: string): Promise<EvaluationRegistered> {
    const r = await verifyEvaluationRegistration(token, await vendorKeyOf(this.deps.settings, this.product), what);
    if (r.serverKid !== this.deps.serverKid) throw new FloatdError('ACTIVATION_FOREIGN', `${what} was made for server key ${r.serverKid}, not this server's key ${this.deps.serverKid}: it answers another server's request`);
    if (expectNonce !== null && r.nonce !== expectNonce) throw new FloatdError('ACTIVATION_FOREIGN', `${what} answers another request than the one sent`);
    if (!sameProducts(r.products, this.product.products)) throw new FloatdError('ACTIVATION_FOREIGN', `${what} is for products ${r.products.join(', ')}, not ${this.product.products.join(', ')}`);
    const match = matchBinding(r.binding, evaluationBinding(this.deps.hostRoot, this.deps.dataDir, this.product.vendorKid));
    if (!match.ok) throw new FloatdError('ACTIVATION_FOREIGN', `${what} is bound to another host: ${match.changed.join(', ')} differ from this host's`, { changed: match.changed });
    await this.deps.store.setMeta(EVALUATION_REGISTRATION_META, token);
    return r;
  }

  /** Registers the evaluation with the vendor's activation service (through a proxy when one is set). */
  async registerOnline(proxy: string | null = this.deps.activation.proxy): Promise<EvaluationRegistered> {
    const url = this.product.evaluationActivation.url;
    if (url === null) throw new FloatdError('USAGE', 'the product file names no activation URL: register the evaluation offline (floatd activate --evaluation --offline-request FILE)');
    const n = nonce();
    const { token } = await this.request(n, this.deps.clock.now());
    const res = await postToVendor(`${url.replace(/\/+$/, '')}/v1/evaluations`, { request: token }, { proxy, noProxy: this.deps.activation.noProxy, ca: this.deps.ca, offline: 'floatd activate --evaluation --offline-request FILE' });
    const body = res.body as { evaluation?: unknown };
    if (typeof body.evaluation !== 'string') throw new FloatdError('ACTIVATION_SERVICE_ERROR', `the activation service at ${url} answered without an evaluation registration`);
    return this.install(body.evaluation, n, "the vendor's evaluation registration");
  }

  /** The offline registration request: readable JSON, signed by the server key. */
  async offlineRequest(): Promise<string> {
    const n = nonce();
    const now = this.deps.clock.now();
    const { token, payload } = await this.request(n, now);
    const requests = await this.requests();
    requests[n] = { createdAt: now, consumedAt: null };
    await this.deps.store.setMeta(EVALUATION_REQUESTS_META, JSON.stringify(requests));
    return `${JSON.stringify(
      {
        floatd: 'evaluation-request',
        about: `Send this file to the vendor of ${this.product.products.join(', ')}. It asks to register the evaluation of this host: it names this server's public key and hashes of host components (no raw machine ids). The vendor answers it with a response file for: floatd activate --evaluation --offline-response FILE`,
        products: payload.products,
        createdAt: new Date(now).toISOString(),
        fingerprint: payload.fingerprint,
        serverKeyFingerprint: this.deps.serverKid,
        request: token,
      },
      null,
      2,
    )}\n`;
  }

  /** Installs the vendor's response to an offline registration request this server wrote. */
  async installResponse(text: string): Promise<EvaluationRegistered> {
    const what = 'the evaluation response';
    let file: Record<string, unknown>;
    try {
      file = JSON.parse(text) as Record<string, unknown>;
    } catch (err) {
      throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} is not JSON: ${(err as Error).message}`);
    }
    if (typeof file !== 'object' || file === null || file['floatd'] !== 'evaluation-response') {
      throw new FloatdError('ACTIVATION_FILE_INVALID', `${what} is not an evaluation-response file ("floatd": ${JSON.stringify((file as Record<string, unknown> | null)?.['floatd'] ?? null)})`);
    }
    const token = file['evaluation'];
    const { payload } = readStatement(token, TOKEN_TYPES.evaluation, what);
    checkReadableFields(file, { ...payload, startedAt: iso(payload['startedAt']), endsAt: iso(payload['endsAt']) }, ['startedAt', 'endsAt'], what);
    const r = await verifyEvaluationRegistration(token as string, await vendorKeyOf(this.deps.settings, this.product), what);
    const requests = await this.requests();
    const request = requests[r.nonce];
    if (request === undefined) {
      if (r.serverKid !== this.deps.serverKid) throw new FloatdError('ACTIVATION_FOREIGN', `${what} was made for server key ${r.serverKid}, not this server's key ${this.deps.serverKid}: it answers another server's request`);
      throw new FloatdError('ACTIVATION_FOREIGN', `${what} answers a request this server did not write`);
    }
    if (request.consumedAt !== null) throw new FloatdError('ACTIVATION_REPLAYED', `${what} was already installed at ${new Date(request.consumedAt).toISOString()}; a response is installed once`);
    const now = this.deps.clock.now();
    if (now - request.createdAt > REQUEST_MAX_AGE_MS) throw new FloatdError('ACTIVATION_STALE', `${what} answers a request written ${new Date(request.createdAt).toISOString()}, more than 30 days ago; write a new request`);
    const installed = await this.install(token as string, r.nonce, what);
    requests[r.nonce] = { ...request, consumedAt: now };
    await this.deps.store.setMeta(EVALUATION_REQUESTS_META, JSON.stringify(requests));
    return installed;
  }

  private async requests(): Promise<Requests> {
    const text = await this.deps.store.getMeta(EVALUATION_REQUESTS_META);
    try {
      const v = JSON.parse(text ?? '{}') as unknown;
      return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Requests) : {};
    } catch {
      return {};
    }
  }
}

function iso(v: unknown): unknown {
  return typeof v === 'number' ? new Date(v).toISOString() : v;
}

/** The data directory's registrar, as commands use it: its server key and the settings its server recorded. */
export async function withEvaluationRegistrar<T>(config: Config, clock: Clock, fn: (r: EvaluationRegistrar) => Promise<T>): Promise<T> {
  const store = openStore(config, 'write');
  try {
    if (!existsSync(config.serverKeyFile)) throw new FloatdError('DATA_DIR_INVALID', `${config.dataDir} has no server key yet: start the server there once (floatd serve) before registering the evaluation`, { setting: 'dataDir' });
    const settings = await recordedLicensingSettings(store, config);
    const privateJwk = readJwkFile(config.serverKeyFile, 'private');
    const kid = privateJwk.kid ?? (await thumbprint(privateJwk));
    const registrar = new EvaluationRegistrar({
      store,
      clock,
      serverKey: { privateJwk: { ...privateJwk, kid }, publicJwk: { ...publicPart(privateJwk), kid } },
      serverKid: kid,
      settings,
      hostRoot: settings.activation?.hostRoot ?? config.hostRoot,
      dataDir: config.dataDir,
      activation: config.activation,
    });
    return await fn(registrar);
  } finally {
    store.close();
  }
}

/** What loadPools takes of the registration: the vendor's start and end, or why evaluation grants nothing yet. */
export async function evaluationTermsRegistered(store: Pick<LeaseStore, 'getMeta'>, settings: LicensingSettings, hostRoot: string, dataDir: string) {
  const state = await evaluationRegistrationState(store, settings, settings.activation?.hostRoot ?? hostRoot, dataDir);
  return { registered: state.registered, unregistered: state.message, registrationRequired: state.required };
}
