import { defaultMaxConnections } from './fd-limit.js';
import { DEFAULT_PORT } from './listen-address.js';
import { bool, inlineRules, int, listenList, nodeId, num, oneOf, optionalPath, path, paths, postgresUrl, proxyUrl, strings, type Parser } from './parsers.js';

export const HTTP_PORT = 8990;
export const HTTPS_PORT = 8443;
/**
 * Per-address limits on by default, far above what a legitimate site reaches from one address
 * (docs/operations.md says why); 0 turns each off.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1000;
export const DEFAULT_ACQUIRE_RATE = { perSecond: 200, burst: 2000 } as const;

/** One setting: how it is read, checked and documented. Its key in SETTINGS is its canonical name. */
export interface SettingSpec<T> {
  /** The environment variable that sets it. */
  readonly env: string;
  /** Checks a raw value (a file's JSON, a variable's text, a flag) and returns it typed. */
  readonly parse: Parser<T>;
  /** The default, written as a config file would give it. */
  readonly fallback: unknown;
  /** The setting's earlier flat name, still accepted in files and flags. */
  readonly alias?: string;
  /** The earlier environment variable, still read. */
  readonly envAlias?: string;
  /** The default as the settings reference (README.md, "Configuration") shows it, where the fallback does not say it. */
  readonly shownDefault?: string;
  /** The value is (or may hold) a credential: never quoted back in messages or logs. */
  readonly secret?: boolean;
}

/** A setting spec, typed by what its parser returns. */
export function setting<T>(spec: SettingSpec<T>): SettingSpec<T> {
  return spec;
}

const httpListen = listenList(HTTP_PORT, 'http', { tlsScheme: false, allowEmpty: true });
const httpsListen = listenList(HTTPS_PORT, 'https', { tlsScheme: false, allowEmpty: true });

/**
 * Every setting, in the order values are checked. The Config type's fields, the
 * environment variables, the aliases and the settings reference all come from here.
 */
export const SETTINGS = {
  'store.dataDir': setting({ env: 'FLOATD_STORE_DATA_DIR', alias: 'dataDir', envAlias: 'FLOATD_DATA_DIR', parse: path, fallback: './data' }),
  'store.kind': setting({ env: 'FLOATD_STORE_KIND', parse: oneOf('sqlite', 'postgres'), fallback: 'sqlite' }),
  'store.url': setting({ env: 'FLOATD_STORE_URL', parse: postgresUrl, fallback: null, secret: true }),
  'store.passwordFile': setting({ env: 'FLOATD_STORE_PASSWORD_FILE', parse: optionalPath, fallback: null }),
  'store.sslMode': setting({ env: 'FLOATD_STORE_SSL_MODE', parse: (v, r) => (v === null ? null : oneOf('disable', 'require', 'verify-ca', 'verify-full')(v, r)), fallback: null, shownDefault: "the URL's sslmode" }),
  'store.caFile': setting({ env: 'FLOATD_STORE_CA_FILE', parse: optionalPath, fallback: null }),
  'store.poolSize': setting({ env: 'FLOATD_STORE_POOL_SIZE', parse: int(1, 500), fallback: 10 }),
  'cluster.nodeId': setting({ env: 'FLOATD_CLUSTER_NODE_ID', parse: nodeId, fallback: null, shownDefault: 'the host name' }),
  'tcp.listen': setting({ env: 'FLOATD_TCP_LISTEN', alias: 'listeners', envAlias: 'FLOATD_LISTEN', parse: listenList(DEFAULT_PORT, 'tcp', { tlsScheme: true, allowEmpty: false }), fallback: ['[::]:8989'] }),
  'http.listen': setting({ env: 'FLOATD_HTTP_LISTEN', parse: httpListen, fallback: ['127.0.0.1:8990'] }),
  // null: as tcp.frameMaxBytes / tcp.handshakeTimeoutSeconds, which the web endpoint followed before it had its own.
  'http.bodyMaxBytes': setting({ env: 'FLOATD_HTTP_BODY_MAX_BYTES', parse: (v, r) => (v === null ? null : int(256, 1 << 20)(v, r)), fallback: null, shownDefault: 'tcp.frameMaxBytes' }),
  'http.requestTimeoutSeconds': setting({ env: 'FLOATD_HTTP_REQUEST_TIMEOUT_SECONDS', parse: (v, r) => (v === null ? null : int(1, 600)(v, r)), fallback: null, shownDefault: 'tcp.handshakeTimeoutSeconds' }),
  'https.listen': setting({ env: 'FLOATD_HTTPS_LISTEN', parse: httpsListen, fallback: [] }),
  'tls.certFile': setting({ env: 'FLOATD_TLS_CERT', parse: optionalPath, fallback: null }),
  'tls.keyFile': setting({ env: 'FLOATD_TLS_KEY', parse: optionalPath, fallback: null }),
  'tls.clientCaFile': setting({ env: 'FLOATD_TLS_CLIENT_CA', parse: optionalPath, fallback: null }),
  'tls.clientCertificates': setting({ env: 'FLOATD_TLS_CLIENT_CERTIFICATES', parse: oneOf('off', 'request', 'require'), fallback: 'off' }),
  'tls.identityFromCertificate': setting({ env: 'FLOATD_TLS_IDENTITY_FROM_CERTIFICATE', parse: bool, fallback: false }),
  'tls.profile': setting({ env: 'FLOATD_TLS_PROFILE', parse: oneOf('intermediate', 'modern'), fallback: 'intermediate' }),
  'metrics.auth': setting({ env: 'FLOATD_METRICS_AUTH', parse: oneOf('none', 'admin'), fallback: 'none' }),
  'admin.certificateSubjects': setting({ env: 'FLOATD_ADMIN_CERTIFICATE_SUBJECTS', parse: strings, fallback: [] }),
  leaseSeconds: setting({ env: 'FLOATD_LEASE_SECONDS', parse: int(30, 31 * 86400), fallback: 1800 }),
  'tcp.frameMaxBytes': setting({ env: 'FLOATD_TCP_FRAME_MAX_BYTES', alias: 'frameMaxBytes', envAlias: 'FLOATD_FRAME_MAX_BYTES', parse: int(256, 1 << 20), fallback: 16384 }),
  'tcp.handshakeTimeoutSeconds': setting({ env: 'FLOATD_TCP_HANDSHAKE_TIMEOUT_SECONDS', alias: 'handshakeTimeoutSeconds', envAlias: 'FLOATD_HANDSHAKE_TIMEOUT_SECONDS', parse: int(1, 600), fallback: 10 }),
  'tcp.idleTimeoutSeconds': setting({ env: 'FLOATD_TCP_IDLE_TIMEOUT_SECONDS', alias: 'idleTimeoutSeconds', envAlias: 'FLOATD_IDLE_TIMEOUT_SECONDS', parse: int(0, 31 * 86400), fallback: 0 }),
  // The default follows the file-descriptor limit (fd-limit.ts); its fallback is there.
  'tcp.maxConnections': setting({
    env: 'FLOATD_TCP_MAX_CONNECTIONS',
    alias: 'maxConnections',
    envAlias: 'FLOATD_MAX_CONNECTIONS',
    parse: (v, r) => (v === undefined ? defaultMaxConnections() : int(1, 1_000_000)(v, r)),
    fallback: undefined,
    shownDefault: 'what the file-descriptor limit allows',
  }),
  'tcp.maxConnectionsPerAddress': setting({ env: 'FLOATD_TCP_MAX_CONNECTIONS_PER_ADDRESS', alias: 'maxConnectionsPerAddress', envAlias: 'FLOATD_MAX_CONNECTIONS_PER_ADDRESS', parse: int(0, 1_000_000), fallback: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS }),
  'acquireRateLimit.perSecond': setting({ env: 'FLOATD_ACQUIRE_RATE_LIMIT_PER_SECOND', parse: num(0, 1_000_000), fallback: DEFAULT_ACQUIRE_RATE.perSecond }),
  // 0: the default burst (DEFAULT_ACQUIRE_RATE's with the default rate, else one second's worth).
  'acquireRateLimit.burst': setting({ env: 'FLOATD_ACQUIRE_RATE_LIMIT_BURST', parse: int(0, 1_000_000), fallback: 0, shownDefault: `burst ${DEFAULT_ACQUIRE_RATE.burst}` }),
  'tcp.backpressure.connectionBytes': setting({ env: 'FLOATD_TCP_BACKPRESSURE_CONNECTION_BYTES', alias: 'backpressure.connectionBytes', envAlias: 'FLOATD_BACKPRESSURE_CONNECTION_BYTES', parse: int(4096, 64 << 20), fallback: 65536 }),
  'tcp.backpressure.totalBytes': setting({ env: 'FLOATD_TCP_BACKPRESSURE_TOTAL_BYTES', alias: 'backpressure.totalBytes', envAlias: 'FLOATD_BACKPRESSURE_TOTAL_BYTES', parse: int(65536, 2 ** 32), fallback: 32 << 20 }),
  'tcp.backpressure.drainTimeoutSeconds': setting({
    env: 'FLOATD_TCP_BACKPRESSURE_DRAIN_TIMEOUT_SECONDS',
    alias: 'backpressure.drainTimeoutSeconds',
    envAlias: 'FLOATD_BACKPRESSURE_DRAIN_TIMEOUT_SECONDS',
    parse: int(1, 3600),
    fallback: 30,
  }),
  'tcp.backlog': setting({ env: 'FLOATD_TCP_BACKLOG', alias: 'backlog', envAlias: 'FLOATD_BACKLOG', parse: int(1, 65535), fallback: 4096 }),
  'tcp.keepAliveSeconds': setting({ env: 'FLOATD_TCP_KEEPALIVE_SECONDS', alias: 'keepAliveSeconds', envAlias: 'FLOATD_KEEPALIVE_SECONDS', parse: int(0, 7200), fallback: 60 }),
  vendorPublicKeys: setting({ env: 'FLOATD_VENDOR_PUBLIC_KEYS', parse: paths, fallback: [] }),
  products: setting({ env: 'FLOATD_PRODUCTS', parse: strings, fallback: [], shownDefault: 'any' }),
  'evaluation.seats': setting({ env: 'FLOATD_EVALUATION_SEATS', parse: int(0, 100), fallback: 5 }),
  'evaluation.days': setting({ env: 'FLOATD_EVALUATION_DAYS', parse: int(0, 365), fallback: 30 }),
  'evaluation.stateDir': setting({ env: 'FLOATD_EVALUATION_STATE', parse: optionalPath, fallback: null, shownDefault: '/var/lib/floatd-evaluation' }),
  'leaseLog.level': setting({ env: 'FLOATD_LEASE_LOG_LEVEL', parse: oneOf('detailed', 'summary'), fallback: 'detailed' }),
  'leaseLog.retentionDays': setting({ env: 'FLOATD_LEASE_LOG_RETENTION_DAYS', parse: int(0, 36500), fallback: 400 }),
  'leaseLog.exportDir': setting({ env: 'FLOATD_LEASE_LOG_EXPORT_DIR', parse: optionalPath, fallback: null }),
  'leaseLog.checkpointEntries': setting({ env: 'FLOATD_LEASE_LOG_CHECKPOINT_ENTRIES', parse: int(1, 1_000_000), fallback: 1000 }),
  'leaseLog.checkpointMinutes': setting({ env: 'FLOATD_LEASE_LOG_CHECKPOINT_MINUTES', parse: int(1, 1440), fallback: 10 }),
  'log.level': setting({ env: 'FLOATD_LOG_LEVEL', parse: oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'), fallback: 'info' }),
  'log.destination': setting({ env: 'FLOATD_LOG_DESTINATION', parse: (v, r) => (v === 'stdout' || v === 'stderr' ? v : path(v, r)), fallback: 'stdout' }),
  'log.format': setting({ env: 'FLOATD_LOG_FORMAT', parse: oneOf('json', 'pretty', 'auto'), fallback: 'auto' }),
  'rules.file': setting({ env: 'FLOATD_RULES_FILE', parse: optionalPath, fallback: null }),
  'rules.inline': setting({ env: 'FLOATD_RULES_INLINE', parse: inlineRules, fallback: null }),
  'rules.groupsFile': setting({ env: 'FLOATD_GROUPS_FILE', parse: optionalPath, fallback: null }),
  hostRoot: setting({ env: 'FLOATD_HOST_ROOT', parse: path, fallback: '/' }),
  'activation.revalidateDays': setting({ env: 'FLOATD_ACTIVATION_REVALIDATE_DAYS', parse: int(1, 365), fallback: 30 }),
  'activation.graceDays': setting({ env: 'FLOATD_ACTIVATION_GRACE_DAYS', parse: int(0, 365), fallback: 14 }),
  'activation.proxy': setting({ env: 'FLOATD_ACTIVATION_PROXY', parse: proxyUrl, fallback: null, shownDefault: 'HTTPS_PROXY', secret: true }),
  'rules.defaultFrequencyPeriodMs': setting({ env: 'FLOATD_RULES_DEFAULT_FREQUENCY_PERIOD_MS', parse: int(-1, 2 ** 31 - 1), fallback: 60_000 }),
} satisfies Record<string, SettingSpec<unknown>>;

export type SettingName = keyof typeof SETTINGS;

/** Each setting's checked value, typed by its parser. */
export type SettingValues = { readonly [K in SettingName]: (typeof SETTINGS)[K] extends SettingSpec<infer T> ? T : never };

export const SETTING_NAMES = Object.keys(SETTINGS) as SettingName[];

/** The spec of a setting, by its name. */
export function specOf(name: SettingName): SettingSpec<unknown> {
  return SETTINGS[name];
}

/** Every name a file or flag may use: canonical names and the earlier flat ones. */
const BY_NAME = new Map<string, SettingName>();
for (const name of SETTING_NAMES) {
  BY_NAME.set(name, name);
  const alias = specOf(name).alias;
  if (alias !== undefined) BY_NAME.set(alias, name);
}

/** The setting a name (canonical or alias) means, or undefined. */
export function settingNamed(name: string): SettingName | undefined {
  return BY_NAME.get(name);
}

export const KNOWN_NAMES: readonly string[] = [...BY_NAME.keys()];

/** Every section a config file may nest settings in ("tcp", "tcp.backpressure", "backpressure"…). */
export const SECTIONS: ReadonlySet<string> = new Set(KNOWN_NAMES.flatMap((n) => n.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));

/** Every environment variable that sets something, canonical and earlier. */
export const SETTING_VARIABLES: readonly string[] = SETTING_NAMES.flatMap((name) => {
  const { env, envAlias } = specOf(name);
  return envAlias === undefined ? [env] : [env, envAlias];
});
