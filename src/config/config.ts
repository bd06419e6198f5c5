import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { FloatdError } from '../domain/errors.js';
import { didYouMean } from '../domain/suggest.js';
import { defaultMaxConnections } from './fd-limit.js';
import { jsonSyntaxProblem } from './json-syntax.js';
import { defaultEvaluationStateDir } from './evaluation-state-dir.js';
import { DEFAULT_PORT, parseHostPort, type ListenAddress } from './listen-address.js';

export interface ListenerConfig extends ListenAddress {
  /** The listener's name, as CLT rules' `port` property sees it. */
  readonly name: string;
  /** NDJSON inside TLS (`tls://HOST:PORT`); HTTPS listeners are always TLS. */
  readonly tls: boolean;
  /**
   * Present when the listener requires a PROXY protocol header (v1 or v2) on
   * every connection, from one of these networks; absent otherwise.
   */
  readonly proxyProtocol?: { readonly trustedProxies: readonly TrustedNetwork[] };
}

/** One `trustedProxies` entry: a CIDR (a bare address is a single host). */
export interface TrustedNetwork {
  readonly address: string;
  readonly prefix: number;
  readonly family: 'ipv4' | 'ipv6';
}

export const HTTP_PORT = 8990;
export const HTTPS_PORT = 8443;
export const TLS_PORT = 8991;
/**
 * Per-address limits on by default, far above what a legitimate site reaches from one address
 * (docs/operations.md says why); 0 turns each off.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 1000;
export const DEFAULT_ACQUIRE_RATE = { perSecond: 200, burst: 2000 } as const;

export interface TlsConfig {
  readonly certFile: string;
  readonly keyFile: string;
  readonly clientCaFile: string | null;
  readonly clientCertificates: 'off' | 'request' | 'require';
  readonly identityFromCertificate: boolean;
  readonly profile: 'intermediate' | 'modern';
}

export interface Config {
  readonly dataDir: string;
  readonly dbFile: string;
  readonly serverKeyFile: string;
  readonly listeners: readonly ListenerConfig[];
  /** The web endpoint: plain-HTTP and HTTPS listeners (either list may be empty). */
  readonly http: { readonly listen: readonly ListenerConfig[] };
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

/** Where a value came from, for error messages. */
type Source = string;

interface Raw {
  value: unknown;
  source: Source;
  /** Folder that relative paths are resolved against. */
  base: string;
}

type Parser = (value: unknown, raw: Raw) => unknown;

class SettingError extends Error {}

function int(min: number, max: number): Parser {
  return (value) => {
    const n = typeof value === 'string' && /^-?\d+$/.test(value.trim()) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      throw new SettingError(`must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
}

/** A number (fractions allowed) from min to max. */
function num(min: number, max: number): Parser {
  return (value) => {
    const n = typeof value === 'string' && /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isFinite(n) || n < min || n > max) throw new SettingError(`must be a number from ${min} to ${max}`);
    return n;
  };
}

function oneOf(...allowed: string[]): Parser {
  return (value) => {
    if (typeof value !== 'string' || !allowed.includes(value)) throw new SettingError(`must be one of ${allowed.join(', ')}`);
    return value;
  };
}

function list(value: unknown): string[] {
  if (typeof value === 'string') return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (Array.isArray(value) && value.every((v) => typeof v === 'string' || (typeof v === 'object' && v !== null))) return value as string[];
  throw new SettingError('must be a list (an array in the config file, comma-separated in the environment)');
}

const path: Parser = (value, raw) => {
  if (typeof value !== 'string' || value.trim() === '') throw new SettingError('must be a file or folder path');
  return isAbsolute(value) ? value : resolve(raw.base, value);
};

const optionalPath: Parser = (value, raw) => (value === null || value === '' ? null : path(value, raw));

/** Rules inline: one string, or an array of lines (easier to read in JSON). */
const inlineRules: Parser = (value) => {
  if (value === null) return null;
  if (typeof value === 'string') return value;
  if (Array.isArray(value) && value.every((v) => typeof v === 'string')) return value.join('\n');
  throw new SettingError('must be the rules as one string, or an array of rule lines');
};

/** An http:// proxy URL, optionally with user:password. */
const proxyUrl: Parser = (value) => {
  if (value === null || value === '') return null;
  if (typeof value !== 'string') throw new SettingError('must be a proxy URL such as http://user:password@proxy.example.com:3128');
  let url: URL;
  try {
    url = new URL(value.includes('://') ? value : `http://${value}`);
  } catch {
    throw new SettingError('must be a proxy URL such as http://user:password@proxy.example.com:3128');
  }
  if (url.protocol !== 'http:') throw new SettingError('must be an http:// proxy URL (floatd tunnels HTTPS through it with CONNECT)');
  return url.href;
};

const paths: Parser = (value, raw) => list(value).map((p) => path(p, raw) as string);

const LISTENER_KEYS = ['address', 'name', 'proxyProtocol', 'trustedProxies'];

/** `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host). */
function trustedNetwork(text: unknown, where: string): TrustedNetwork {
  const bad = () => new SettingError(`${where} must be an IPv4 or IPv6 CIDR such as "10.0.0.0/8" or "fd00::/8"; got ${JSON.stringify(text)}`);
  if (typeof text !== 'string') throw bad();
  const m = /^([^/\s]+)(?:\/(\d{1,3}))?$/.exec(text.trim());
  if (!m) throw bad();
  const address = m[1]!;
  const version = isIP(address);
  if (version === 0) throw bad();
  const max = version === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) throw new SettingError(`${where} "${text}": an IPv${version} prefix length is at most ${max}`);
  return { address, prefix, family: version === 4 ? 'ipv4' : 'ipv6' };
}

/** `proxyProtocol` and `trustedProxies` of one listener object: both or neither. */
function proxyProtocolOf(o: Record<string, unknown>, i: number): ListenerConfig['proxyProtocol'] {
  const on = o['proxyProtocol'];
  const trusted = o['trustedProxies'];
  if (on !== undefined && typeof on !== 'boolean') throw new SettingError(`[${i}].proxyProtocol must be true or false`);
  if (trusted !== undefined && !Array.isArray(trusted)) throw new SettingError(`[${i}].trustedProxies must be a list of CIDRs, e.g. ["10.0.0.0/8"]`);
  const networks = ((trusted ?? []) as unknown[]).map((t, j) => trustedNetwork(t, `[${i}].trustedProxies[${j}]`));
  if (on !== true) {
    if (networks.length > 0) throw new SettingError(`[${i}].trustedProxies is set but proxyProtocol is not true: add "proxyProtocol": true, or remove trustedProxies`);
    return undefined;
  }
  if (networks.length === 0) {
    throw new SettingError(`[${i}].proxyProtocol needs trustedProxies: the CIDRs of the load balancers allowed to send PROXY headers, e.g. ["10.0.0.0/8"]`);
  }
  return { trustedProxies: networks };
}

/**
 * A list of listen addresses: `HOST:PORT` strings or `{"address", "name",
 * "proxyProtocol", "trustedProxies"}` objects. With `tlsScheme`,
 * `tls://HOST[:PORT]` marks NDJSON-over-TLS (its port defaulting to 8991,
 * its name to "tls").
 */
function listenList(defaultPort: number, defaultName: string, options: { tlsScheme: boolean; allowEmpty: boolean }): Parser {
  return (value) => {
    const items = list(value);
    if (items.length === 0 && !options.allowEmpty) throw new SettingError('must name at least one HOST:PORT');
    return items.map((item, i) => {
      let address: unknown = item;
      let name: string | undefined;
      let proxyProtocol: ListenerConfig['proxyProtocol'];
      if (typeof item === 'object') {
        const o = item as Record<string, unknown>;
        address = o['address'];
        if (o['name'] !== undefined) {
          if (typeof o['name'] !== 'string' || !/^[A-Za-z0-9_.:-]{1,64}$/.test(o['name'])) {
            throw new SettingError(`[${i}].name must be 1-64 letters, digits or _ . : -`);
          }
          name = o['name'];
        }
        for (const key of Object.keys(o)) {
          if (!LISTENER_KEYS.includes(key)) throw new SettingError(`[${i}] has unknown key "${key}" (allowed: ${LISTENER_KEYS.join(', ')})`);
        }
        proxyProtocol = proxyProtocolOf(o, i);
      }
      if (typeof address !== 'string') throw new SettingError(`[${i}] must be "HOST:PORT" or {"address": "HOST:PORT", "name": "…"}`);
      const tls = options.tlsScheme && /^tls:\/\//i.test(address.trim());
      if (!tls && /^[a-z][a-z0-9+.-]*:\/\//i.test(address.trim())) {
        throw new SettingError(`[${i}] "${address}": ${options.tlsScheme ? 'the only scheme here is tls://' : 'give HOST:PORT without a scheme'}`);
      }
      try {
        const parsed = parseHostPort(tls ? address.trim().slice(6) : address, tls ? TLS_PORT : defaultPort);
        return { ...parsed, name: name ?? (tls ? 'tls' : defaultName), tls, ...(proxyProtocol ? { proxyProtocol } : {}) };
      } catch (err) {
        throw new SettingError(`[${i}] ${(err as Error).message}`);
      }
    });
  };
}

const listeners = listenList(DEFAULT_PORT, 'tcp', { tlsScheme: true, allowEmpty: false });

const bool: Parser = (value) => {
  if (value === true || value === 'true' || value === '1') return true;
  if (value === false || value === 'false' || value === '0') return false;
  throw new SettingError('must be true or false');
};

const logLevel = oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent');

interface SettingSpec {
  readonly env: string;
  readonly parse: Parser;
  readonly fallback: unknown;
}

/** Every setting: its config-file path, environment variable and default. */
const SETTINGS: Record<string, SettingSpec> = {
  dataDir: { env: 'FLOATD_DATA_DIR', parse: path, fallback: './data' },
  listeners: { env: 'FLOATD_LISTEN', parse: listeners, fallback: ['[::]:8989'] },
  'http.listen': { env: 'FLOATD_HTTP_LISTEN', parse: listenList(HTTP_PORT, 'http', { tlsScheme: false, allowEmpty: true }), fallback: ['127.0.0.1:8990'] },
  'https.listen': { env: 'FLOATD_HTTPS_LISTEN', parse: listenList(HTTPS_PORT, 'https', { tlsScheme: false, allowEmpty: true }), fallback: [] },
  'tls.certFile': { env: 'FLOATD_TLS_CERT', parse: optionalPath, fallback: null },
  'tls.keyFile': { env: 'FLOATD_TLS_KEY', parse: optionalPath, fallback: null },
  'tls.clientCaFile': { env: 'FLOATD_TLS_CLIENT_CA', parse: optionalPath, fallback: null },
  'tls.clientCertificates': { env: 'FLOATD_TLS_CLIENT_CERTIFICATES', parse: oneOf('off', 'request', 'require'), fallback: 'off' },
  'tls.identityFromCertificate': { env: 'FLOATD_TLS_IDENTITY_FROM_CERTIFICATE', parse: bool, fallback: false },
  'tls.profile': { env: 'FLOATD_TLS_PROFILE', parse: oneOf('intermediate', 'modern'), fallback: 'intermediate' },
  'metrics.auth': { env: 'FLOATD_METRICS_AUTH', parse: oneOf('none', 'admin'), fallback: 'none' },
  'admin.certificateSubjects': { env: 'FLOATD_ADMIN_CERTIFICATE_SUBJECTS', parse: (v) => list(v).map(String), fallback: [] },
  leaseSeconds: { env: 'FLOATD_LEASE_SECONDS', parse: int(30, 31 * 86400), fallback: 1800 },
  frameMaxBytes: { env: 'FLOATD_FRAME_MAX_BYTES', parse: int(256, 1 << 20), fallback: 16384 },
  handshakeTimeoutSeconds: { env: 'FLOATD_HANDSHAKE_TIMEOUT_SECONDS', parse: int(1, 600), fallback: 10 },
  idleTimeoutSeconds: { env: 'FLOATD_IDLE_TIMEOUT_SECONDS', parse: int(0, 31 * 86400), fallback: 0 },
  // The default follows the file-descriptor limit (fd-limit.ts); its fallback is there.
  maxConnections: { env: 'FLOATD_MAX_CONNECTIONS', parse: (v, r) => (v === undefined ? defaultMaxConnections() : int(1, 1_000_000)(v, r)), fallback: undefined },
  maxConnectionsPerAddress: { env: 'FLOATD_MAX_CONNECTIONS_PER_ADDRESS', parse: int(0, 1_000_000), fallback: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS },
  'acquireRateLimit.perSecond': { env: 'FLOATD_ACQUIRE_RATE_LIMIT_PER_SECOND', parse: num(0, 1_000_000), fallback: DEFAULT_ACQUIRE_RATE.perSecond },
  'acquireRateLimit.burst': { env: 'FLOATD_ACQUIRE_RATE_LIMIT_BURST', parse: int(0, 1_000_000), fallback: 0 },
  'backpressure.connectionBytes': { env: 'FLOATD_BACKPRESSURE_CONNECTION_BYTES', parse: int(4096, 64 << 20), fallback: 65536 },
  'backpressure.totalBytes': { env: 'FLOATD_BACKPRESSURE_TOTAL_BYTES', parse: int(65536, 2 ** 32), fallback: 32 << 20 },
  'backpressure.drainTimeoutSeconds': { env: 'FLOATD_BACKPRESSURE_DRAIN_TIMEOUT_SECONDS', parse: int(1, 3600), fallback: 30 },
  backlog: { env: 'FLOATD_BACKLOG', parse: int(1, 65535), fallback: 4096 },
  keepAliveSeconds: { env: 'FLOATD_KEEPALIVE_SECONDS', parse: int(0, 7200), fallback: 60 },
  vendorPublicKeys: { env: 'FLOATD_VENDOR_PUBLIC_KEYS', parse: paths, fallback: [] },
  products: { env: 'FLOATD_PRODUCTS', parse: (v) => list(v).map(String), fallback: [] },
  'evaluation.seats': { env: 'FLOATD_EVALUATION_SEATS', parse: int(0, 100), fallback: 5 },
  'evaluation.days': { env: 'FLOATD_EVALUATION_DAYS', parse: int(0, 365), fallback: 30 },
  'evaluation.stateDir': { env: 'FLOATD_EVALUATION_STATE', parse: optionalPath, fallback: null },
  'leaseLog.level': { env: 'FLOATD_LEASE_LOG_LEVEL', parse: oneOf('detailed', 'summary'), fallback: 'detailed' },
  'leaseLog.retentionDays': { env: 'FLOATD_LEASE_LOG_RETENTION_DAYS', parse: int(0, 36500), fallback: 400 },
  'leaseLog.exportDir': { env: 'FLOATD_LEASE_LOG_EXPORT_DIR', parse: optionalPath, fallback: null },
  'leaseLog.checkpointEntries': { env: 'FLOATD_LEASE_LOG_CHECKPOINT_ENTRIES', parse: int(1, 1_000_000), fallback: 1000 },
  'leaseLog.checkpointMinutes': { env: 'FLOATD_LEASE_LOG_CHECKPOINT_MINUTES', parse: int(1, 1440), fallback: 10 },
  'log.level': { env: 'FLOATD_LOG_LEVEL', parse: logLevel, fallback: 'info' },
  'log.destination': { env: 'FLOATD_LOG_DESTINATION', parse: (v, r) => (v === 'stdout' || v === 'stderr' ? v : path(v, r)), fallback: 'stdout' },
  'log.format': { env: 'FLOATD_LOG_FORMAT', parse: oneOf('json', 'pretty', 'auto'), fallback: 'auto' },
  'rules.file': { env: 'FLOATD_RULES_FILE', parse: optionalPath, fallback: null },
  'rules.inline': { env: 'FLOATD_RULES_INLINE', parse: inlineRules, fallback: null },
  'rules.groupsFile': { env: 'FLOATD_GROUPS_FILE', parse: optionalPath, fallback: null },
  hostRoot: { env: 'FLOATD_HOST_ROOT', parse: path, fallback: '/' },
  'activation.revalidateDays': { env: 'FLOATD_ACTIVATION_REVALIDATE_DAYS', parse: int(1, 365), fallback: 30 },
  'activation.graceDays': { env: 'FLOATD_ACTIVATION_GRACE_DAYS', parse: int(0, 365), fallback: 14 },
  'activation.proxy': { env: 'FLOATD_ACTIVATION_PROXY', parse: proxyUrl, fallback: null },
  'rules.defaultFrequencyPeriodMs': { env: 'FLOATD_RULES_DEFAULT_FREQUENCY_PERIOD_MS', parse: int(-1, 2 ** 31 - 1), fallback: 60_000 },
};

/** Environment variables floatd reads besides the settings' own. */
const OTHER_ENVIRONMENT = ['FLOATD_CONFIG', 'FLOATD_DEBUG'];

function unknownEnvironment(env: Record<string, string | undefined>): string[] {
  const known = new Set([...Object.values(SETTINGS).map((s) => s.env), ...OTHER_ENVIRONMENT]);
  return Object.keys(env)
    .filter((name) => name.startsWith('FLOATD_') && !known.has(name))
    .sort()
    .map((name) => `environment variable ${name} names no floatd setting and is ignored${didYouMean(name, known)}`);
}

export interface ConfigSources {
  /** Path of a JSON config file (`--config`, or FLOATD_CONFIG). */
  readonly configFile?: string;
  readonly env?: Record<string, string | undefined>;
  /** Values from command-line flags, by setting name. */
  readonly flags?: Record<string, unknown>;
  readonly cwd?: string;
}

function flatten(obj: Record<string, unknown>, file: string): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [key, value] of Object.entries(obj)) {
    if (key === '$schema' || key === '//' || key.startsWith('_comment')) continue;
    if (value !== null && typeof value === 'object' && !Array.isArray(value) && !(key in SETTINGS)) {
      for (const [sub, v] of Object.entries(value as Record<string, unknown>)) {
        const name = `${key}.${sub}`;
        if (!(name in SETTINGS)) throw new FloatdError('CONFIG_INVALID', `${file}: unknown setting "${name}"${didYouMean(name, Object.keys(SETTINGS))}`, { setting: name });
        out.set(name, v);
      }
    } else {
      if (!(key in SETTINGS)) throw new FloatdError('CONFIG_INVALID', `${file}: unknown setting "${key}"${didYouMean(key, Object.keys(SETTINGS))}`, { setting: key });
      out.set(key, value);
    }
  }
  return out;
}

function readConfigFile(file: string): Map<string, unknown> {
  let parsed: unknown;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `${file}: cannot read the config file: ${(err as Error).message}`);
  }
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const p = jsonSyntaxProblem(text, err as Error);
    throw new FloatdError('CONFIG_INVALID', `${file}: line ${p.line}, column ${p.column}: the config file is not valid JSON: ${p.reason}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new FloatdError('CONFIG_INVALID', `${file}: the config file must hold one JSON object`);
  }
  return flatten(parsed as Record<string, unknown>, file);
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value)) deepFreeze(v);
  }
  return value;
}

/** The TLS settings, checked together: what needs a certificate has one, and client-certificate options fit. */
function tlsConfig(values: Record<string, unknown>, raws: Map<string, Raw>, neededBy: string | null): TlsConfig | null {
  const certFile = values['tls.certFile'] as string | null;
  const keyFile = values['tls.keyFile'] as string | null;
  const source = (name: string) => raws.get(name)?.source ?? 'default';
  if (neededBy !== null && (certFile === null || keyFile === null)) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting ${neededBy} (${source(neededBy)}) has TLS listeners, which need tls.certFile and tls.keyFile (--tls-cert, --tls-key); ${certFile === null ? 'tls.certFile' : 'tls.keyFile'} is not set`,
      { setting: certFile === null ? 'tls.certFile' : 'tls.keyFile' },
    );
  }
  if ((certFile === null) !== (keyFile === null)) {
    const missing = certFile === null ? 'tls.certFile' : 'tls.keyFile';
    throw new FloatdError('CONFIG_INVALID', `settings tls.certFile and tls.keyFile go together; ${missing} is not set`, { setting: missing });
  }
  const clientCertificates = values['tls.clientCertificates'] as TlsConfig['clientCertificates'];
  const clientCaFile = values['tls.clientCaFile'] as string | null;
  const identityFromCertificate = values['tls.identityFromCertificate'] as boolean;
  if (clientCertificates !== 'off' && clientCaFile === null) {
    throw new FloatdError('CONFIG_INVALID', `setting tls.clientCertificates (${source('tls.clientCertificates')}) is "${clientCertificates}", which needs tls.clientCaFile: the CA that client certificates must chain to`, { setting: 'tls.clientCaFile' });
  }
  if (identityFromCertificate && clientCertificates === 'off') {
    throw new FloatdError('CONFIG_INVALID', `setting tls.identityFromCertificate (${source('tls.identityFromCertificate')}) needs tls.clientCertificates "request" or "require"`, { setting: 'tls.identityFromCertificate' });
  }
  if (certFile === null || keyFile === null) return null;
  return { certFile, keyFile, clientCaFile, clientCertificates, identityFromCertificate, profile: values['tls.profile'] as TlsConfig['profile'] };
}

/** HTTPS_PROXY (or https_proxy) from the environment, as curl and most tools read it. */
function environmentProxy(env: Record<string, string | undefined>): string | null {
  const value = env['HTTPS_PROXY'] ?? env['https_proxy'];
  if (value === undefined || value.trim() === '') return null;
  try {
    return proxyUrl(value.trim(), { value, source: 'environment HTTPS_PROXY', base: '/' }) as string | null;
  } catch (err) {
    throw new FloatdError('CONFIG_INVALID', `environment HTTPS_PROXY ${(err as Error).message}; got "${value}"`, { setting: 'activation.proxy' });
  }
}

/**
 * Merges defaults ← config file ← FLOATD_* environment ← flags, validates every
 * value once, derives file locations and freezes the result. A bad value
 * throws CONFIG_INVALID naming the setting, where it came from and what is allowed.
 */
export function loadConfig(sources: ConfigSources = {}): Config {
  const cwd = sources.cwd ?? process.cwd();
  const env = sources.env ?? {};
  const raws = new Map<string, Raw>();
  const configFile = sources.configFile ?? env['FLOATD_CONFIG'];
  if (configFile !== undefined && configFile !== '') {
    const file = resolve(cwd, configFile);
    for (const [name, value] of readConfigFile(file)) raws.set(name, { value, source: `${file}`, base: dirname(file) });
  }
  for (const [name, spec] of Object.entries(SETTINGS)) {
    const v = env[spec.env];
    if (v !== undefined && v !== '') raws.set(name, { value: v, source: `environment ${spec.env}`, base: cwd });
  }
  for (const [name, value] of Object.entries(sources.flags ?? {})) {
    if (!(name in SETTINGS)) throw new FloatdError('CONFIG_INVALID', `unknown setting "${name}"`, { setting: name });
    if (value !== undefined) raws.set(name, { value, source: 'command line', base: cwd });
  }
  const values: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(SETTINGS)) {
    const raw = raws.get(name) ?? { value: spec.fallback, source: 'default', base: cwd };
    try {
      values[name] = spec.parse(raw.value, raw);
    } catch (err) {
      const shown = typeof raw.value === 'string' ? `"${raw.value}"` : JSON.stringify(raw.value);
      throw new FloatdError('CONFIG_INVALID', `setting ${name} (${raw.source}) ${(err as Error).message}; got ${shown}`, { setting: name });
    }
  }
  if (values['rules.file'] !== null && values['rules.inline'] !== null) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `settings rules.file (${raws.get('rules.file')?.source}) and rules.inline (${raws.get('rules.inline')?.source}) are both set; use one`,
      { setting: 'rules.inline' },
    );
  }
  const source = (name: string) => raws.get(name)?.source ?? 'default';
  if ((values['backpressure.totalBytes'] as number) < (values['backpressure.connectionBytes'] as number)) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting backpressure.totalBytes (${source('backpressure.totalBytes')}) must be at least backpressure.connectionBytes (${values['backpressure.connectionBytes']}); got ${values['backpressure.totalBytes']}`,
      { setting: 'backpressure.totalBytes' },
    );
  }
  const perSecond = values['acquireRateLimit.perSecond'] as number;
  const burst = values['acquireRateLimit.burst'] as number;
  // The default rate comes with the default burst; a rate set without a burst gets one second's worth.
  const defaultBurst = source('acquireRateLimit.perSecond') === 'default' ? DEFAULT_ACQUIRE_RATE.burst : Math.max(1, Math.ceil(perSecond));
  if (perSecond === 0 && burst > 0) {
    throw new FloatdError(
      'CONFIG_INVALID',
      `setting acquireRateLimit.burst (${source('acquireRateLimit.burst')}) is set but acquireRateLimit.perSecond is not: set both, e.g. {"acquireRateLimit": {"perSecond": 2, "burst": 10}}`,
      { setting: 'acquireRateLimit.perSecond' },
    );
  }
  const dataDir = values['dataDir'] as string;
  const tcpListeners = values['listeners'] as ListenerConfig[];
  const httpsListen = (values['https.listen'] as ListenerConfig[]).map((l) => ({ ...l, tls: true }));
  const tls = tlsConfig(values, raws, tcpListeners.some((l) => l.tls) ? 'listeners' : httpsListen.length > 0 ? 'https.listen' : null);
  return deepFreeze({
    dataDir,
    dbFile: join(dataDir, 'floatd.db'),
    serverKeyFile: join(dataDir, 'server-key.jwk'),
    listeners: tcpListeners,
    http: { listen: values['http.listen'] as ListenerConfig[] },
    https: { listen: httpsListen },
    tls,
    admin: { certificateSubjects: values['admin.certificateSubjects'] as string[] },
    metrics: { auth: values['metrics.auth'] as 'none' | 'admin' },
    adminTokenFile: join(dataDir, 'admin-token'),
    leaseSeconds: values['leaseSeconds'] as number,
    frameMaxBytes: values['frameMaxBytes'] as number,
    handshakeTimeoutSeconds: values['handshakeTimeoutSeconds'] as number,
    idleTimeoutSeconds: values['idleTimeoutSeconds'] as number,
    maxConnections: values['maxConnections'] as number,
    maxConnectionsPerAddress: values['maxConnectionsPerAddress'] as number,
    acquireRateLimit: perSecond > 0 ? { perSecond, burst: burst > 0 ? burst : defaultBurst } : null,
    backpressure: {
      connectionBytes: values['backpressure.connectionBytes'] as number,
      totalBytes: values['backpressure.totalBytes'] as number,
      drainTimeoutSeconds: values['backpressure.drainTimeoutSeconds'] as number,
    },
    backlog: values['backlog'] as number,
    keepAliveSeconds: values['keepAliveSeconds'] as number,
    vendorPublicKeys: values['vendorPublicKeys'] as string[],
    products: values['products'] as string[],
    evaluation: { seats: values['evaluation.seats'] as number, days: values['evaluation.days'] as number },
    evaluationExplicit: { seats: raws.has('evaluation.seats'), days: raws.has('evaluation.days') },
    evaluationSource: { seats: source('evaluation.seats'), days: source('evaluation.days') },
    evaluationStateDir: (values['evaluation.stateDir'] as string | null) ?? defaultEvaluationStateDir(env),
    unknownEnvironment: unknownEnvironment(env),
    leaseLog: {
      level: values['leaseLog.level'] as 'detailed' | 'summary',
      retentionDays: values['leaseLog.retentionDays'] as number,
      exportDir: values['leaseLog.exportDir'] as string | null,
      checkpointEntries: values['leaseLog.checkpointEntries'] as number,
      checkpointMinutes: values['leaseLog.checkpointMinutes'] as number,
    },
    log: {
      level: values['log.level'] as string,
      destination: values['log.destination'] as string,
      format: values['log.format'] as 'json' | 'pretty' | 'auto',
    },
    rules: {
      file: values['rules.file'] as string | null,
      inline: values['rules.inline'] as string | null,
      groupsFile: values['rules.groupsFile'] as string | null,
      defaultFrequencyPeriodMs: values['rules.defaultFrequencyPeriodMs'] as number,
    },
    hostRoot: values['hostRoot'] as string,
    activation: {
      revalidateDays: values['activation.revalidateDays'] as number,
      graceDays: values['activation.graceDays'] as number,
      proxy: (values['activation.proxy'] as string | null) ?? environmentProxy(env),
      noProxy: env['NO_PROXY'] ?? env['no_proxy'] ?? '',
    },
  });
}
