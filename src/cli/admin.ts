import { existsSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { AdminTokens } from '../app/admin.js';
import { openStore } from '../app/stores.js';
import { serverRuntime } from '../app/inspect.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import type { AdminTokenStore, LeaseStore } from '../domain/ports.js';
import type { Config } from '../config/config.js';
import { FloatdError, type ErrorCode } from '../domain/errors.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, table, type Io } from './common.js';
import { CSV_HEADER, csvRow, eventJson } from '../app/lease-log.js';
import { BLOCK_MAX_SECONDS } from '../domain/blocks.js';
import type { BlocksReply, BlockView, LeasesReply, LogReply, RevokeReply, SuspensionReply, UnblockReply } from '../domain/admin-replies.js';
import { filterFrom } from './log.js';
import { LogTable } from './log-format.js';
import { adminUrl, TLS_CLIENT_FLAGS, tlsFlagsGiven, tlsMaterialFrom } from './server-flags.js';
import type { TlsMaterial } from '../client/tls-material.js';

export const ADMIN_USAGE = `floatd admin leases [--user U] [--host H] [--product P] [--json]     live leases (who holds what, since when, from where)
floatd admin revoke LEASE --reason TEXT [--block SPAN [--block-instance]]   end a lease now (a unique prefix of its id will do);
                                                                     --block 30m keeps its user (--block-instance: only its
                                                                     instance) out of the product for that span (s, m, h, d, w)
floatd admin blocks [--json] | unblock BLOCK                         holders kept out after a revoke / lift a block now
floatd admin rules reload | tls reload                               re-read the rules / the TLS certificate
floatd admin suspend [LISTENER] | resume [LISTENER]                   refuse / take new lease connections (all listeners by default)
floatd admin log [floatd log's filters] [--limit N] [--json | --csv] [--utc]   the lease log, through the admin API
floatd admin token create NAME | list | revoke NAME                   admin API tokens (stored as hashes; a new one is shown once)
  each takes [--server URL] [--token-file FILE] [--ca FILE] [--cert FILE --key FILE] [--config FILE] [--data-dir DIR];
  by default the server of the data directory (its plain-HTTP listener; its HTTPS one with --ca or --cert) and
  DATA/admin-token. --server is http(s)://HOST[:PORT] or HOST[:PORT]: http://, port 8990 (https://, port 8443 with
  --ca or --cert). A client certificate listed in admin.certificateSubjects needs no token.`;

interface Target {
  readonly url: string;
  /** Null when a client certificate is the credential (admin.certificateSubjects) and no token file was given or found. */
  readonly token: string | null;
  readonly tls: TlsMaterial;
}

/** The admin token: --token-file, else the data directory's; a client certificate may stand in for a token that is not there. */
function readToken(config: Config, values: Record<string, unknown>): string | null {
  const given = values['token-file'] as string | undefined;
  const tokenFile = given ?? config.adminTokenFile;
  try {
    return readFileSync(tokenFile, 'utf8').trim();
  } catch {
    if (given === undefined && values['cert'] !== undefined) return null;
    throw new FloatdError('INPUT_INVALID', `cannot read the admin token file ${tokenFile}: pass --token-file FILE (floatd admin token create NAME makes one), or run where the server's data directory is`);
  }
}

/**
 * The admin endpoint to talk to: --server (a bare host:port is http://, or
 * https:// when --ca or --cert is given), or the data directory's running
 * server's plain-HTTP listener (its HTTPS one when --ca or --cert is given, or
 * when it has no plain one).
 */
async function target(config: Config, values: Record<string, unknown>): Promise<Target> {
  const token = readToken(config, values);
  const wantsTls = tlsFlagsGiven(values);
  if (values['server'] !== undefined) {
    const server = String(values['server']);
    const { url, scheme } = adminUrl(server, wantsTls);
    return { url, token, tls: tlsMaterialFrom(values, scheme, server) };
  }
  const store = openStore(config, 'read');
  try {
    const runtime = await serverRuntime(config, store);
    if (runtime === null) throw new FloatdError('SERVER_UNREACHABLE', `no floatd is running on ${config.dataDir}; start it, or pass --server URL`);
    const order = wantsTls ? (['https', 'http'] as const) : (['http', 'https'] as const);
    const web = runtime.listeners.find((l) => l.scheme === order[0]) ?? runtime.listeners.find((l) => l.scheme === order[1]);
    if (web === undefined) throw new FloatdError('SERVER_UNREACHABLE', `the floatd on ${config.dataDir} has no web endpoint (http.listen / https.listen); pass --server URL`);
    const host = web.address === '::' || web.address === '0.0.0.0' ? '127.0.0.1' : web.address.includes(':') ? `[${web.address}]` : web.address;
    const url = `${web.scheme}://${host}:${web.port}`;
    return { url, token, tls: tlsMaterialFrom(values, web.scheme as 'http' | 'https', url) };
  } finally {
    store.close();
  }
}

interface Answer {
  readonly status: number;
  readonly body: Record<string, unknown>;
}

function call(t: Target, method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
  const url = new URL(`${t.url}${path}`);
  const payload = body === undefined ? undefined : JSON.stringify(body);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(
      url,
      {
        method,
        ...(t.tls.ca !== undefined ? { ca: t.tls.ca } : {}),
        ...(t.tls.cert !== undefined ? { cert: t.tls.cert, key: t.tls.key } : {}),
        headers: { ...(t.token !== null ? { authorization: `Bearer ${t.token}` } : {}), ...(payload !== undefined ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } : {}) },
        timeout: 15_000,
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => {
          try {
            resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> });
          } catch {
            reject(new FloatdError('SERVER_UNREACHABLE', `${t.url} answered ${res.statusCode} without floatd's JSON: is it a floatd web endpoint?`));
          }
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error('no answer within 15 s')));
    req.on('error', (err) => reject(new FloatdError('SERVER_UNREACHABLE', `cannot reach ${t.url}: ${err.message}`)));
    req.end(payload);
  });
}

/** The body of a success (the route's reply, as the server declares it), or the server's coded error as ours. */
function ok<T extends { readonly ok: true }>(a: Answer): T {
  if (a.body['ok'] === true) return a.body as unknown as T;
  const error = a.body['error'] as { code?: string; message?: string } | undefined;
  throw new FloatdError((error?.code ?? 'INTERNAL') as ErrorCode, error?.message ?? `the server answered ${a.status}`);
}

function inWords(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s` : s < 7200 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
}

function localTime(iso: unknown): string {
  const d = new Date(String(iso));
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

async function tokens(sub: string | undefined, positionals: string[], config: Config, io: Io, json: boolean): Promise<number> {
  let store: (LeaseStore & AdminTokenStore) | null = null;
  try {
    store = openStore(config, 'write');
    const admin = new AdminTokens(store, new SystemClock());
    // Commands on the data directory act as the OS user who ran them.
    const actor = `cli:${userInfo().username}`;
    if (sub === 'create') {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'floatd admin token create takes one NAME');
      const token = await admin.create(positionals[0]!, actor);
      io.out(token);
      io.err(`admin token ${positionals[0]} made; it is shown only now: keep it in a file of mode 0600 and pass --token-file`);
      return 0;
    }
    if (sub === 'list') {
      const list = await admin.list();
      if (json) io.out(JSON.stringify(list.map((t) => ({ name: t.name, createdAt: new Date(t.createdAt).toISOString() })), null, 2));
      else io.out(list.length === 0 ? 'no admin tokens' : table(list.map((t) => [t.name, localTime(new Date(t.createdAt).toISOString())]), ['NAME', 'CREATED']));
      return 0;
    }
    if (sub === 'revoke') {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'floatd admin token revoke takes one NAME');
      await admin.revoke(positionals[0]!, actor);
      io.out(`admin token ${positionals[0]} revoked`);
      return 0;
    }
    throw new FloatdError('USAGE', `floatd admin token needs create NAME, list or revoke NAME\n${ADMIN_USAGE}`);
  } finally {
    store?.close();
  }
}

const ADMIN_FLAGS = {
  ...CONFIG_FLAGS,
  server: { type: 'string' },
  'token-file': { type: 'string' },
  ...TLS_CLIENT_FLAGS,
  json: { type: 'boolean' },
  user: { type: 'string' },
  host: { type: 'string' },
  product: { type: 'string' },
  reason: { type: 'string' },
  block: { type: 'string' },
  'block-user': { type: 'boolean' },
  'block-instance': { type: 'boolean' },
  since: { type: 'string' },
  until: { type: 'string' },
  event: { type: 'string', multiple: true },
  instance: { type: 'string' },
  lease: { type: 'string' },
  listener: { type: 'string' },
  actor: { type: 'string' },
  pool: { type: 'string' },
  limit: { type: 'string' },
  csv: { type: 'boolean' },
  utc: { type: 'boolean' },
} as const;

type AdminValues = ReturnType<typeof parse<typeof ADMIN_FLAGS>>['values'];

export async function admin(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parse(rest, ADMIN_FLAGS, true);
  const config = configFrom(io, values);
  if (sub === 'token') return tokens(positionals[0], positionals.slice(1), config, io, values.json === true);
  const t = (): Promise<Target> => target(config, values);
  switch (sub) {
    case 'leases':
      return showLeases(await t(), values, io);
    case 'revoke':
      return revoke(t, positionals, values, io);
    case 'blocks':
      if (positionals.length > 0) throw new FloatdError('USAGE', 'floatd admin blocks takes no arguments (floatd admin unblock BLOCK lifts one)');
      return showBlocks(await t(), values, io);
    case 'unblock': {
      if (positionals.length !== 1) throw new FloatdError('USAGE', 'floatd admin unblock takes one BLOCK id (or a unique prefix; floatd admin blocks lists them)');
      const lifted = ok<UnblockReply>(await call(await t(), 'POST', `/v1/admin/blocks/${encodeURIComponent(positionals[0]!)}/lift`)).block;
      io.out(`block ${lifted.id} lifted: ${blockedWho(lifted)} may take seats of ${lifted.product} again`);
      return 0;
    }
    case 'rules':
    case 'tls': {
      if (positionals[0] !== 'reload') throw new FloatdError('USAGE', `floatd admin ${sub} reload`);
      return reloadThroughApi(sub, await t(), io);
    }
    case 'suspend':
    case 'resume': {
      if (positionals.length > 1) throw new FloatdError('USAGE', `floatd admin ${sub} takes at most one LISTENER name`);
      const { suspended } = ok<SuspensionReply>(await call(await t(), 'POST', `/v1/admin/listeners/${sub}`, positionals[0] === undefined ? {} : { listener: positionals[0] }));
      io.out(`${positionals[0] === undefined ? 'every listener' : `listener ${positionals[0]}`} ${sub === 'suspend' ? 'suspended' : 'resumed'}; suspended now: ${suspended.join(', ') || 'none'}`);
      return 0;
    }
    case 'log':
      return showLog(t, values, io);
    default:
      throw new FloatdError('USAGE', `floatd admin needs one of: leases, revoke, blocks, unblock, rules reload, tls reload, suspend, resume, log, token\n${ADMIN_USAGE}`);
  }
}

/** floatd admin leases: who holds what, since when, from where. */
async function showLeases(t: Target, values: AdminValues, io: Io): Promise<number> {
  const q = new URLSearchParams();
  for (const k of ['user', 'host', 'product'] as const) if (values[k] !== undefined) q.set(k, values[k]!);
  const { leases } = ok<LeasesReply>(await call(t, 'GET', `/v1/admin/leases${q.size > 0 ? `?${q}` : ''}`));
  if (values.json) io.out(JSON.stringify(leases, null, 2));
  else if (leases.length === 0) io.out('no leases held');
  else {
    // A cluster says which node each client is on.
    const nodes = leases.some((l) => l.node !== undefined);
    io.out(
      table(
        leases.map((l) => [l.id.slice(0, 8), `${l.user}@${l.host}`, l.instance, l.product, localTime(l.grantedAt), inWords(l.expiresInMs), l.remote, l.listener, ...(nodes ? [l.node ?? ''] : [])]),
        ['LEASE', 'USER@HOST', 'INSTANCE', 'PRODUCT', 'SINCE', 'EXPIRES IN', 'REMOTE', 'LISTENER', ...(nodes ? ['NODE'] : [])],
      ),
    );
  }
  return 0;
}

/** floatd admin revoke LEASE --reason TEXT [--block SPAN]: checks the arguments before finding the server. */
async function revoke(t: () => Promise<Target>, positionals: string[], values: AdminValues, io: Io): Promise<number> {
  if (positionals.length !== 1 || values.reason === undefined) throw new FloatdError('USAGE', 'floatd admin revoke takes one LEASE id (or a unique prefix) and --reason TEXT');
  const block = blockFlags(values);
  const { lease, block: made } = ok<RevokeReply>(await call(await t(), 'POST', `/v1/admin/leases/${encodeURIComponent(positionals[0]!)}/revoke`, { reason: values.reason, ...block }));
  io.out(`revoked lease ${lease.id} of ${lease.user}@${lease.host} (${lease.product})`);
  if (made !== undefined) io.out(`${blockedWho(made)} kept out of ${made.product} until ${localTime(made.until)} (block ${made.id.slice(0, 8)}; floatd admin unblock lifts it)`);
  return 0;
}

/** floatd admin blocks: holders kept out after a revoke. */
async function showBlocks(t: Target, values: AdminValues, io: Io): Promise<number> {
  const { blocks } = ok<BlocksReply>(await call(t, 'GET', '/v1/admin/blocks'));
  if (values.json) io.out(JSON.stringify(blocks, null, 2));
  else if (blocks.length === 0) io.out('no blocks in force');
  else {
    io.out(
      table(
        blocks.map((b) => [b.id.slice(0, 8), blockedWho(b), b.product, localTime(b.until), inWords(b.endsInMs), b.actor, b.reason]),
        ['BLOCK', 'KEPT OUT', 'PRODUCT', 'UNTIL', 'ENDS IN', 'BY', 'REASON'],
      ),
    );
  }
  return 0;
}

/** floatd admin log: the same filters and formats as floatd log, through the admin API. */
async function showLog(t: () => Promise<Target>, values: AdminValues, io: Io): Promise<number> {
  const filter = filterFrom(values, new SystemClock().now());
  if (values.json && values.csv) throw new FloatdError('USAGE', 'choose one of --json and --csv');
  const q = new URLSearchParams();
  if (filter.sinceMs !== undefined) q.set('since', new Date(filter.sinceMs).toISOString());
  if (filter.untilMs !== undefined) q.set('until', new Date(filter.untilMs).toISOString());
  const names = { user: filter.user, host: filter.host, instance: filter.instance, product: filter.product, pool: values.pool, lease: filter.leaseId, listener: filter.listener, actor: filter.actor };
  for (const [k, v] of Object.entries(names)) if (v !== undefined) q.set(k, v);
  if (filter.events !== undefined) q.set('event', filter.events.join(','));
  const limit = intFlag(values.limit, 'limit', 1);
  if (limit !== undefined) q.set('limit', String(limit));
  const { events } = ok<LogReply>(await call(await t(), 'GET', `/v1/admin/log${q.size > 0 ? `?${q}` : ''}`));
  if (values.json) for (const e of events) io.out(JSON.stringify(eventJson(e)));
  else if (values.csv) io.out([CSV_HEADER, ...events.map(csvRow)].join('\n'));
  else for (const line of new LogTable(values.utc ?? false).lines(events)) io.out(line);
  return 0;
}

const SPAN_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 } as const;

/** --block SPAN [--block-user | --block-instance] as the revoke body's blockSeconds and blockScope. */
function blockFlags(values: Record<string, unknown>): { blockSeconds?: number; blockScope?: 'user' | 'instance' } {
  const span = values['block'];
  const forUser = values['block-user'] === true;
  const forInstance = values['block-instance'] === true;
  if (span === undefined) {
    if (forUser || forInstance) throw new FloatdError('USAGE', '--block-user and --block-instance go with --block SPAN');
    return {};
  }
  if (forUser && forInstance) throw new FloatdError('USAGE', 'choose one of --block-user (the default) and --block-instance');
  const m = /^(\d+)([smhdw])$/.exec(String(span).trim());
  const ms = m === null ? NaN : Number(m[1]) * SPAN_MS[m[2] as keyof typeof SPAN_MS];
  if (!(ms >= 1000) || ms > BLOCK_MAX_SECONDS * 1000) {
    throw new FloatdError('USAGE', `--block must be a span such as 90s, 30m, 12h, 7d or 2w, of at least 1 s and at most a year; got "${String(span)}"`);
  }
  return { blockSeconds: ms / 1000, blockScope: forInstance ? 'instance' : 'user' };
}

function blockedWho(b: BlockView): string {
  return b.scope === 'instance' ? `instance ${String(b.instance)} of ${b.user}` : `user ${b.user}`;
}

/** POST …/reload on the admin API and say what came of it (floatd admin rules|tls reload, floatd rules reload). */
async function reloadThroughApi(what: 'rules' | 'tls', t: Target, io: Io): Promise<number> {
  const a = await call(t, 'POST', `/v1/admin/${what}/reload`);
  // A coded refusal (no TLS to reload, a bad token…) is said with its code; a refused new file below.
  if (a.status === 401 || a.status === 429 || a.status >= 500 || a.body['error'] !== undefined) ok(a);
  if (a.body['ok'] === true) {
    io.out(what === 'rules' ? `rules reloaded: ${String(a.body['summary'] ?? '')}` : String(a.body['message'] ?? 'TLS certificate reloaded'));
    return 0;
  }
  const code = what === 'rules' ? 'RULES_INVALID' : 'CONFIG_INVALID';
  io.err(`floatd ${what === 'rules' ? 'rules' : 'admin tls'} reload: ${code}: the new ${what === 'rules' ? 'rules are' : 'certificate is'} refused and the server keeps what it had:\n${String(a.body['message'] ?? '')}`);
  return 1;
}

/** `floatd rules reload`: the admin API of the data directory's server (SIGHUP does the same for people who send it). */
export async function reloadRulesOfServer(config: Config, io: Io, values: Record<string, unknown>): Promise<number> {
  openStore(config, 'read').close();
  if (!existsSync(config.adminTokenFile) && values['token-file'] === undefined) {
    throw new FloatdError('INPUT_INVALID', `no admin token at ${config.adminTokenFile}: the server makes it at its first start; pass --token-file FILE otherwise`);
  }
  return reloadThroughApi('rules', await target(config, values), io);
}
