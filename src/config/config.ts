import { hostname } from 'node:os';
import { join } from 'node:path';
import { FloatdError } from '../domain/errors.js';
import { defaultEvaluationStateDir } from './evaluation-state-dir.js';
import { proxyUrl, withoutPassword, type ListenerConfig, type Raw } from './parsers.js';
import { DEFAULT_ACQUIRE_RATE, SETTING_NAMES, specOf, type SettingName, type SettingValues } from './settings.js';
import { readSources, unknownEnvironment, type ConfigSources } from './sources.js';

export type { ListenerConfig, TrustedNetwork } from './parsers.js';
export { TLS_PORT } from './parsers.js';
export { DEFAULT_ACQUIRE_RATE, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, HTTP_PORT, HTTPS_PORT } from './settings.js';
export type { ConfigSources } from './sources.js';

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string | null;
  readonly clientCertificates: 'off' | 'request' | 'require';
  readonly identityFromCertificate: boolean;
  readonly profile: 'intermediate' | 'modern';
}

export interface StoreConfig {
  readonly kind: 'sqlite' | 'postgres';
  /** postgres only: the database's URL (it may carry the password). */
  readonly url: string | null;
  readonly passwordFile: string | null;
  /** TLS to the database; null: as the URL's sslmode says. */
  readonly sslMode: 'disable' | 'require' | 'verify-ca' | 'verify-full' | null;
  readonly caFile: string | null;
  readonly poolSize: number;
}

export interface Config {
  readonly dataDir: string;
  readonly dbFile: string;
  /** Also in Secrets: the server's signing key. */
  readonly serverKeyFile: string;
  readonly listeners: readonly ListenerConfig[];
  /** Which database holds the leases: SQLite in the data directory (the default), or a PostgreSQL database several nodes share. */
  readonly store: StoreConfig;
  /** This node's name among the nodes sharing a PostgreSQL store. */
  readonly nodeId: string;
  /**
   * The web endpoint: plain-HTTP listeners (may be empty), the largest request body, and how long a request's
   * headers and body (and an HTTPS handshake) may take.
   */
  readonly http: { readonly listen: readonly ListenerConfig[]; readonly bodyMaxBytes: number; readonly requestTimeoutSeconds: number };
  readonly https: { readonly listen: readonly ListenerConfig[] };
  /** Certificate and key for HTTPS and tls:// listeners; null when none is configured. */
  readonly tls: TlsConfig | null;
  /** Client-certificate subjects (e.g. "CN=ops") that may use the admin API without a token. */
  readonly admin: { readonly certificateSubjects: readonly string[] };
  /** Who may read /metrics: anyone (`none`), or admin credentials only (`admin`). */
  readonly metrics: { readonly auth: 'none' | 'admin' };
  /** DATA/admin-token: the server's own admin token, made at first start (mode 0600). */
  readonly adminTokenFile: string;
  readonly leaseSeconds: number;
  readonly frameMaxBytes: number;
  readonly handshakeTimeoutSeconds: number;
  readonly idleTimeoutSeconds: number;
  /** Open connections at most, over every listener (NDJSON and web: one budget); by default what the file-descriptor limit allows. */
  readonly maxConnections: number;
  /** Open NDJSON connections per client address (after PROXY protocol); 0 = no limit. */
  readonly maxConnectionsPerAddress: number;
  /** Acquisitions per client address (a token bucket, every door); null = no limit. */
  readonly acquireRateLimit: { readonly perSecond: number; readonly burst: number } | null;
  /** Slow readers: when a connection's unsent replies stop it being read, and when it is dropped. */
  readonly backpressure: { readonly connectionBytes: number; readonly totalBytes: number; readonly drainTimeoutSeconds: number };
  readonly backlog: number;
  readonly keepAliveSeconds: number;
  readonly vendorPublicKeys: readonly string[];
  /** Products this server accepts keys for; empty accepts any. */
  readonly products: readonly string[];
  readonly evaluation: { readonly seats: number; readonly days: number };
  /** Whether the operator set evaluation.seats / evaluation.days (a vendor product file's terms are then lowered to them, never raised). */
  readonly evaluationExplicit: { readonly seats: boolean; readonly days: boolean };
  /** Where each evaluation setting came from ("environment FLOATD_EVALUATION_SEATS"), for the log line when one asks more than the terms allow. */
  readonly evaluationSource: { readonly seats: string; readonly days: string };
  /** The folder of the evaluation record, kept outside the data directory (docs/activation.md, "Evaluation"). */
  readonly evaluationStateDir: string;
  /** `FLOATD_*` environment variables that name no setting (a typo is otherwise silently ignored), each with the closest known name. */
  readonly unknownEnvironment: readonly string[];
  readonly leaseLog: {
    readonly level: 'detailed' | 'summary';
    readonly retentionDays: number;
    /** Where entries are exported (JSON lines, mode 0600) before each prune; null: no export. */
    readonly exportDir: string | null;
    /** A signed checkpoint of the hash chain every this many entries… */
    readonly checkpointEntries: number;
    /** …and at least this often while entries come. */
    readonly checkpointMinutes: number;
  };
  readonly log: { readonly level: string; readonly destination: string; readonly format: 'json' | 'pretty' | 'auto' };
  readonly rules: RulesSettings;
  /** Where host paths (machine id, DMI, /proc, /dev/disk) are read: / unless the host is mounted elsewhere. */
  readonly hostRoot: string;
  readonly activation: ActivationSettings;
}

/** Server activation: how often online activations re-validate, how long the vendor may be unreachable, which proxy to use. */
export interface ActivationSettings {
  readonly revalidateDays: number;
  readonly graceDays: number;
  /** activation.proxy, else HTTPS_PROXY (or https_proxy) from the environment; null: connect directly. */
  readonly proxy: string | null;
  /** NO_PROXY (or no_proxy) from the environment: hosts reached directly. */
  readonly noProxy: string;
}

/** Where CLT rules and groups come from (at most one of `file` and `inline`). */
export interface RulesSettings {
  /** A rules file ("file" provider), re-read on reload. */
  readonly file: string | null;
  /** Rules written in the config itself ("rules-based" provider). */
  readonly inline: string | null;
  /** Groups file: `GROUP.users = USER, USER…` lines. */
  readonly groupsFile: string | null;
  /** Default frequency period when the rules do not set CONFIG default_frequency_period; ≤ 0 switches frequency limits off. */
  readonly defaultFrequencyPeriodMs: number;
}

/**
 * What must never be logged or quoted back: kept apart from the ordinary settings
 * (Config still carries the paths and the proxy for the code that reads them there).
 */
export interface Secrets {
  /** The server's signing key (DATA/server-key.jwk). */
  readonly serverKeyFile: string;
  /** The server's admin token (DATA/admin-token). */
  readonly adminTokenFile: string;
  /** The activation proxy URL; its user:password, when it has one, is a credential. */
  readonly activationProxy: string | null;
  /** The PostgreSQL store's URL; its password, when it has one, is a credential. */
  readonly storeUrl: string | null;
}

/** The settings as a source gave them, and how to name each in a message. */
class Given {
  constructor(
    private readonly raws: ReadonlyMap<SettingName, Raw>,
    private readonly cwd: string,
  ) {}

  raw(name: SettingName): Raw {
    return this.raws.get(name) ?? { value: specOf(name).fallback, source: 'default', base: this.cwd, name };
  }

  has(name: SettingName): boolean {
    return this.raws.has(name);
  }

  source(name: SettingName): string {
    return this.raws.get(name)?.source ?? 'default';
  }

  /** The name as it was written; one not given is spelled like `like` was (its earlier name beside an earlier name). */
  label(name: SettingName, like?: SettingName): string {
    const given = this.raws.get(name)?.name;
    if (given !== undefined) return given;
    const earlier = specOf(name).alias;
    return like !== undefined && earlier !== undefined && this.raws.get(like)?.name === specOf(like).alias ? earlier : name;
  }
}

/** A value as messages show it: quoted when text, without a password when the setting may hold one. */
function shown(value: unknown, secret: boolean): string {
  return typeof value === 'string' ? `"${secret ? withoutPassword(value) : value}"` : JSON.stringify(value);
}

/** Checks every value with its setting's parser; the first bad one throws CONFIG_INVALID naming it. */
function checkAll(given: Given): SettingValues {
  const values: Record<string, unknown> = {};
  for (const name of SETTING_NAMES) {
    const spec = specOf(name);
    const raw = given.raw(name);
    try {
      values[name] = spec.parse(raw.value, raw);
    } catch (err) {
      throw new FloatdError('CONFIG_INVALID', `setting ${raw.name} (${raw.source}) ${(err as Error).message}; got ${shown(raw.value, spec.secret === true)}`, { setting: raw.name });
    }
  }
  // Each value came from its own setting's parser, so it has that setting's type.
  return values as SettingValues;
}

/** The TLS settings, checked together: what needs a certificate has one, and client-certificate options fit. */
function storeConfig(v: SettingValues, given: Given): StoreConfig {
  const kind = v['store.kind'];
  const url = v['store.url'];
  if (kind === 'postgres' && url === null) {
    throw new FloatdError('CONFIG_INVALID', `setting store.kind (${given.source('store.kind')}) is "postgres", which needs store.url (FLOATD_STORE_URL): the database's URL, such as postgres://floatd@db.example.com:5432/floatd`, { setting: 'store.url' });
  }
  if (kind === 'sqlite') {
    for (const name of ['store.url', 'store.passwordFile', 'store.sslMode', 'store.caFile'] as const) {
      if (given.has(name)) throw new FloatdError('CONFIG_INVALID', `setting ${name} (${given.source(name)}) is for store.kind "postgres"; store.kind is "sqlite"`, { setting: name });
    }
  }
  return { kind, url, passwordFile: v['store.passwordFile'], sslMode: v['store.sslMode'], caFile: v['store.caFile'], poolSize: v['store.poolSize'] };
}

function tlsConfig(v: SettingValues, given: Given, neededBy: SettingName | null): TlsConfig | null {
  const certFile = v['tls.certFile'];
  const keyFile = v['tls.keyFile'];
  const source = (name: SettingName) => given.source(name);
  if (neededBy !== null && (certFile === null || keyFile === null)) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting ${given.label(neededBy)} (${source(neededBy)}) has TLS listeners, which need tls.certFile and tls.keyFile (--tls-cert, --tls-key); ${certFile === null ? 'tls.certFile' : 'tls.keyFile'} is not set`,
      { setting: certFile === null ? 'tls.certFile' : 'tls.keyFile' },
    );
  }
  if ((certFile === null) !== (keyFile === null)) {
    const missing = certFile === null ? 'tls.certFile' : 'tls.keyFile';
    throw new FloatdError('CONFIG_INVALID', `settings tls.certFile and tls.keyFile go together; ${missing} is not set`, { setting: missing });
  }
  const clientCertificates = v['tls.clientCertificates'];
  const clientCaFile = v['tls.clientCaFile'];
  const identityFromCertificate = v['tls.identityFromCertificate'];
  if (clientCertificates !== 'off' && clientCaFile === null) {
    throw new FloatdError('CONFIG_INVALID', `setting tls.clientCertificates (${source('tls.clientCertificates')}) is "${clientCertificates}", which needs tls.clientCaFile: the CA that client certificates must chain to`, { setting: 'tls.clientCaFile' });
  }
  if (identityFromCertificate && clientCertificates === 'off') {
    throw new FloatdError('CONFIG_INVALID', `setting tls.identityFromCertificate (${source('tls.identityFromCertificate')}) needs tls.clientCertificates "request" or "require"`, { setting: 'tls.identityFromCertificate' });
  }
  if (certFile === null || keyFile === null) return null;
  return { certFile, keyFile, clientCaFile, clientCertificates, identityFromCertificate, profile: v['tls.profile'] };
}

/** Settings that are checked against each other: rules from one place, backpressure limits in order. */
function checkTogether(v: SettingValues, given: Given): void {
  if (v['rules.file'] !== null && v['rules.inline'] !== null) {
    throw new FloatdError('CONFIG_INVALID', `settings rules.file (${given.source('rules.file')}) and rules.inline (${given.source('rules.inline')}) are both set; use one`, { setting: 'rules.inline' });
  }
  const total = 'tcp.backpressure.totalBytes';
  if (v[total] < v['tcp.backpressure.connectionBytes']) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting ${given.label(total)} (${given.source(total)}) must be at least ${given.label('tcp.backpressure.connectionBytes', total)} (${v['tcp.backpressure.connectionBytes']}); got ${v[total]}`,
      { setting: given.label(total) },
    );
  }
}

/** The acquisition rate limit: null when off; a burst not set is the default's with the default rate, else one second's worth. */
function acquireRateLimit(v: SettingValues, given: Given): Config['acquireRateLimit'] {
  const perSecond = v['acquireRateLimit.perSecond'];
  const burst = v['acquireRateLimit.burst'];
  if (perSecond === 0 && burst > 0) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting acquireRateLimit.burst (${given.source('acquireRateLimit.burst')}) is set but acquireRateLimit.perSecond is not: set both, e.g. {"acquireRateLimit": {"perSecond": 2, "burst": 10}}`,
      { setting: 'acquireRateLimit.perSecond' },
    );
  }
  if (perSecond === 0) return null;
  const defaultBurst = given.has('acquireRateLimit.perSecond') ? Math.max(1, Math.ceil(perSecond)) : DEFAULT_ACQUIRE_RATE.burst;
  return { perSecond, burst: burst > 0 ? burst : defaultBurst };
}

/** HTTPS_PROXY (or https_proxy) from the environment, as curl and most tools read it. */
function environmentProxy(env: Record<string, string | undefined>): string | null {
  const value = env['HTTPS_PROXY'] ?? env['https_proxy'];
  if (value === undefined || value.trim() === '') return null;
  try {
    return proxyUrl(value.trim(), { value, source: 'environment HTTPS_PROXY', base: '/', name: 'activation.proxy' });
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `environment HTTPS_PROXY ${(err as Error).message}; got "${withoutPassword(value)}"`, { setting: 'activation.proxy' });
  }
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The Config the checked values make, with the file locations derived from the data directory. */
function assemble(v: SettingValues, given: Given, env: Record<string, string | undefined>): Config {
  const dataDir = v['store.dataDir'];
  const listeners = v['tcp.listen'];
  const httpsListen = v['https.listen'].map((l) => ({ ...l, tls: true }));
  const rateLimit = acquireRateLimit(v, given);
  const tls = tlsConfig(v, given, listeners.some((l) => l.tls) ? 'tcp.listen' : httpsListen.length > 0 ? 'https.listen' : null);
  return {
    dataDir,
    dbFile: join(dataDir, 'floatd.db'),
    serverKeyFile: join(dataDir, 'server-key.jwk'),
    store: storeConfig(v, given),
    nodeId: v['cluster.nodeId'] ?? hostname(),
    listeners,
    http: {
      listen: v['http.listen'],
      bodyMaxBytes: v['http.bodyMaxBytes'] ?? v['tcp.frameMaxBytes'],
      requestTimeoutSeconds: v['http.requestTimeoutSeconds'] ?? v['tcp.handshakeTimeoutSeconds'],
    },
    https: { listen: httpsListen },
    tls,
    admin: { certificateSubjects: v['admin.certificateSubjects'] },
    metrics: { auth: v['metrics.auth'] },
    adminTokenFile: join(dataDir, 'admin-token'),
    leaseSeconds: v.leaseSeconds,
    frameMaxBytes: v['tcp.frameMaxBytes'],
    handshakeTimeoutSeconds: v['tcp.handshakeTimeoutSeconds'],
    idleTimeoutSeconds: v['tcp.idleTimeoutSeconds'],
    maxConnections: v['tcp.maxConnections'],
    maxConnectionsPerAddress: v['tcp.maxConnectionsPerAddress'],
    acquireRateLimit: rateLimit,
    backpressure: {
      connectionBytes: v['tcp.backpressure.connectionBytes'],
      totalBytes: v['tcp.backpressure.totalBytes'],
      drainTimeoutSeconds: v['tcp.backpressure.drainTimeoutSeconds'],
    },
    backlog: v['tcp.backlog'],
    keepAliveSeconds: v['tcp.keepAliveSeconds'],
    vendorPublicKeys: v.vendorPublicKeys,
    products: v.products,
    evaluation: { seats: v['evaluation.seats'], days: v['evaluation.days'] },
    evaluationExplicit: { seats: given.has('evaluation.seats'), days: given.has('evaluation.days') },
    evaluationSource: { seats: given.source('evaluation.seats'), days: given.source('evaluation.days') },
    evaluationStateDir: v['evaluation.stateDir'] ?? defaultEvaluationStateDir(env),
    unknownEnvironment: unknownEnvironment(env),
    leaseLog: {
      level: v['leaseLog.level'],
      retentionDays: v['leaseLog.retentionDays'],
      exportDir: v['leaseLog.exportDir'],
      checkpointEntries: v['leaseLog.checkpointEntries'],
      checkpointMinutes: v['leaseLog.checkpointMinutes'],
    },
    log: { level: v['log.level'], destination: v['log.destination'], format: v['log.format'] },
    rules: { file: v['rules.file'], inline: v['rules.inline'], groupsFile: v['rules.groupsFile'], defaultFrequencyPeriodMs: v['rules.defaultFrequencyPeriodMs'] },
    hostRoot: v.hostRoot,
    activation: {
      revalidateDays: v['activation.revalidateDays'],
      graceDays: v['activation.graceDays'],
      proxy: v['activation.proxy'] ?? environmentProxy(env),
      noProxy: env['NO_PROXY'] ?? env['no_proxy'] ?? '',
    },
  };
}

/**
 * Merges defaults ← config file ← FLOATD_* environment ← flags, validates every
 * value once, derives file locations and freezes the result. A bad value
 * throws CONFIG_INVALID naming the setting, where it came from and what is allowed.
 * The secrets come back beside the settings.
 */
export function loadSettings(sources: ConfigSources = {}): { readonly config: Config; readonly secrets: Secrets } {
  const cwd = sources.cwd ?? process.cwd();
  const env = sources.env ?? {};
  const given = new Given(readSources(sources, cwd, env), cwd);
  const values = checkAll(given);
  checkTogether(values, given);
  const config = deepFreeze(assemble(values, given, env));
  const secrets = Object.freeze({ serverKeyFile: config.serverKeyFile, adminTokenFile: config.adminTokenFile, activationProxy: config.activation.proxy, storeUrl: config.store.url });
  return { config, secrets };
}

/** The settings alone (see loadSettings). */
export function loadConfig(sources: ConfigSources = {}): Config {
  return loadSettings(sources).config;
}

/** The config as it may be logged or printed: the proxy's password, if it has one, is left out. */
export function loggableConfig(config: Config): Config {
  const proxy = config.activation.proxy;
  const url = config.store.url;
  return {
    ...config,
    ...(proxy === null ? {} : { activation: { ...config.activation, proxy: withoutPassword(proxy) } }),
    ...(url === null ? {} : { store: { ...config.store, url: withoutPassword(url) } }),
  };
}
