import { hostname, userInfo } from 'node:os';
import { offlineStatus } from '../app/inspect.js';
import type { ServerStatus } from '../app/status.js';
import { SystemClock } from '../adapters/clock/system-clock.js';
import { parseServerAddress } from '../client/server-address.js';
import { TcpTransport } from '../client/tcp-transport.js';
import type { TlsMaterial } from '../client/tls-material.js';
import { FloatdError } from '../domain/errors.js';
import { keyStateLabel } from '../app/key-state.js';
import { CONFIG_FLAGS, configFrom, parse, refuseVendorKeyFlag, table, type Io } from './common.js';
import { TLS_CLIENT_FLAGS, tlsFlagsGiven, tlsMaterialFrom } from './server-flags.js';
import type { PublicStatus } from '../app/public-status.js';
import { formatPublicStatus, isPublicStatus, webStatus } from './remote-status.js';

export const STATUS_USAGE = `floatd status [--json] [--server [tls://]HOST[:PORT] [--ca FILE] [--cert FILE --key FILE] | --server http(s)://HOST:PORT [--token-file FILE] [--ca FILE]] [--config FILE] [--data-dir DIR]
  Reads the data directory (everything a running server reports), or asks the server at --server:
  over its web endpoint with an admin token everything, otherwise seats per product and health only
  (NDJSON: HOST[:PORT], port 8989, or tls://HOST[:PORT], port 8991, with --ca for a private CA and
  --cert/--key when the listener asks for a client certificate).`;

function duration(ms: number): string {
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} days`;
}

/** The evaluation's terms, who set them, its dates, and the products it served. */
function evaluationLines(e: ServerStatus['evaluation']): string[] {
  if (e === null) return [];
  const out: string[] = [];
  if (e.endedForGood !== null) out.push(`evaluation: ENDED for good (${e.endedForGood}); install a license key`);
  else {
    out.push(`evaluation: ${e.seats} seat(s) for ${e.days} day(s), started ${e.startedAt}, ends ${e.endsAt}, ${e.expired ? 'over' : `${e.timeLeft} left`}`);
  }
  if (e.setBy !== null) out.push(`  seats set by: ${e.setBy.seats}`, `  days set by: ${e.setBy.days}`);
  out.push(`  products seen: ${e.productsSeen.length === 0 ? '(none yet)' : e.productsSeen.join(', ')}`);
  if (e.record !== null) out.push(`  record: ${e.record}`);
  if (e.registration) out.push(e.registration.registered ? `  registered with the vendor: yes (evaluation ${e.registration.id})` : `  registered with the vendor: NO, evaluation grants nothing until it is: ${e.registration.message ?? ''}`);
  return out;
}

export function formatStatus(s: ServerStatus): string {
  const lines: string[] = [];
  lines.push(`floatd ${s.version}${s.running === null ? '' : s.running ? ' (server running)' : ' (server not running)'}`);
  if (s.mode === 'evaluation' && s.evaluation) {
    lines.push(
      s.evaluation.expired
        ? `mode: EVALUATION OVER since ${s.evaluation.endsAt}; install a license key`
        : `mode: evaluation, ${s.evaluation.seats} seat(s), ${s.evaluation.timeLeft} left (ends ${s.evaluation.endsAt})`,
    );
  } else {
    lines.push(`mode: ${s.mode}`);
  }
  lines.push(...evaluationLines(s.evaluation));
  if (s.keys.length > 0) {
    lines.push('', 'license keys:');
    lines.push(
      table(
        s.keys.map((k) => [
          k.id,
          k.licensee,
          k.product,
          String(k.seats),
          String(k.seatsInUse),
          k.expires ?? 'never',
          k.timeLeft ?? '-',
          keyStateLabel(k.state, k.id, k.notBefore),
          k.features.length > 0 ? k.features.join(',') : '-',
        ]),
        ['ID', 'LICENSEE', 'PRODUCT', 'SEATS', 'IN USE', 'EXPIRES', 'TIME LEFT', 'STATE', 'FEATURES'],
      ),
    );
  }
  for (const k of s.keys) {
    const a = k.activation;
    if (a === undefined) continue;
    if (a.state === 'active') {
      lines.push(`activation of ${k.id}: active on this host${a.changed.length > 0 ? `; changed since activation, tolerated: ${a.changed.join(', ')}` : ''}${a.graceUntil ? `; the vendor could not confirm it: grants until ${a.graceUntil}` : ''}`);
    } else if (a.state === 'hardware-changed') {
      lines.push(`activation of ${k.id}: NOT GRANTING: hardware changed: ${a.changed.join(', ')}. ${a.message ?? ''}`.trim());
    } else {
      lines.push(`activation of ${k.id}: NOT GRANTING: ${a.message ?? a.state}`);
    }
  }
  for (const r of s.rejectedKeys) lines.push(`ignored key ${r.id}: ${r.code}: ${r.message}`);
  lines.push('', 'seats:');
  lines.push(
    s.products.length === 0
      ? '  (no pools)'
      : table(s.products.map((p) => [p.product, String(p.seatsTotal), String(p.seatsGrantable ?? p.seatsTotal), String(p.seatsInUse), String(p.seatsFree)]), ['PRODUCT', 'TOTAL', 'GRANTABLE', 'IN USE', 'FREE']),
  );
  for (const p of s.products) {
    const idle = p.seatsTotal - (p.seatsGrantable ?? p.seatsTotal);
    if (idle > 0) {
      const why = s.mode === 'evaluation' && s.evaluation?.registration?.registered === false ? 'the evaluation is not registered with the vendor' : 'their key(s) lack an activation';
      lines.push(`  ${idle} seat(s) of ${p.product} cannot be granted: ${why} (see above); they are not counted as free`);
    }
  }
  lines.push('');
  lines.push(`leases held: ${s.leasesHeld}`);
  if (s.running === false) {
    lines.push(s.downToleranceMs === null ? 'the server is not running; no lease is held' : `the server is not running: the first lease expires in ${duration(s.downToleranceMs)} unless it is back to renew it`);
  } else {
    lines.push(
      s.downToleranceMs === null
        ? 'server may be down: indefinitely (no lease is held)'
        : `server may be down: ${duration(s.downToleranceMs)} before the first lease expires`,
    );
  }
  lines.push(`server key fingerprint: ${s.serverKeyFingerprint ?? '(not yet created)'}`);
  if (s.rules !== null) lines.push(`rules: ${s.rules}`);
  if (s.logAnchor) lines.push(`lease-log anchor: ${s.logAnchor.hash} (checkpoint of #${s.logAnchor.entry}, signed ${s.logAnchor.signedAt}; floatd log verify --anchor HASH)`);
  if (s.listeners.length > 0) {
    lines.push(`listeners: ${s.listeners.map((l) => `${l.name} ${l.scheme ?? 'tcp'}://${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}${l.suspended ? ' (SUSPENDED)' : ''}`).join(', ')}`);
  }
  if (s.cluster !== undefined) lines.push(...clusterLines(s.cluster));
  return lines.join('\n');
}

/** The cluster a node belongs to: its nodes, the database's replication, what to look at. */
function clusterLines(c: NonNullable<ServerStatus['cluster']>): string[] {
  const db = c.database;
  return [
    '',
    `cluster (answered by node ${c.node}):`,
    ...c.nodes.map((n) => `  node ${n.id}: ${n.up ? 'up' : 'NOT ANSWERING'}, ${n.leases} lease(s), floatd ${n.version}, last seen ${n.lastSeen}${n.listeners.length > 0 ? `, ${n.listeners.join(' ')}` : ''}`),
    db === null
      ? '  database: replication not read yet'
      : `  database: ${db.role}, ${db.synchronous ? `synchronous standby streaming (${db.standbys.filter((b) => b.syncState === 'sync' || b.syncState === 'quorum').map((b) => b.name).join(', ')})` : 'NO synchronous standby'}${db.standbys.length > 0 ? `; standbys: ${db.standbys.map((b) => `${b.name} ${b.state ?? '?'}/${b.syncState ?? '?'}`).join(', ')}` : ''}`,
    ...c.warnings.map((w) => `  warning: ${w}`),
  ];
}

async function remoteStatus(address: string, tls: TlsMaterial): Promise<ServerStatus> {
  const transport = await TcpTransport.connect(address, { requestTimeoutMs: 10_000, tls });
  try {
    const hello = await transport.request('hello', { v: 1, client: { user: userInfo().username, host: hostname(), instance: 'floatd-status' } });
    if (!hello.ok) throw new FloatdError('SERVER_UNREACHABLE', `${address}: ${hello.error.code}: ${hello.error.message}`);
    const reply = await transport.request('status');
    if (!reply.ok) throw new FloatdError('SERVER_UNREACHABLE', `${address}: ${reply.error.code}: ${reply.error.message}`);
    const { ok: _ok, id: _id, ...status } = reply as Record<string, unknown>;
    return status as unknown as ServerStatus;
  } finally {
    transport.close();
  }
}

export async function status(args: string[], io: Io): Promise<number> {
  refuseVendorKeyFlag(args, 'floatd status');
  const { values } = parse(args, { ...CONFIG_FLAGS, ...TLS_CLIENT_FLAGS, json: { type: 'boolean' }, server: { type: 'string' }, 'token-file': { type: 'string' } });
  let s: ServerStatus | PublicStatus;
  if (values.server === undefined && tlsFlagsGiven(values)) throw new FloatdError('USAGE', '--ca, --cert and --key go with --server tls://HOST[:PORT] or https://HOST:PORT');
  const web = values.server !== undefined && /^https?:\/\//i.test(values.server);
  if (values['token-file'] !== undefined && !web) {
    throw new FloatdError('USAGE', 'floatd status: --token-file goes with --server http(s)://HOST:PORT (the admin API on the web endpoint, which shows everything to an admin token)');
  }
  if (web && (values.cert !== undefined || values.key !== undefined)) throw new FloatdError('USAGE', 'floatd status: --cert and --key go with --server tls://HOST[:PORT]; the web endpoint takes --token-file');
  if (values.server !== undefined) {
    let tls: TlsMaterial = {};
    if (!web) {
      let scheme;
      try {
        scheme = parseServerAddress(values.server).scheme;
      } catch (err) {
        throw new FloatdError('USAGE', `--server: ${(err as Error).message}`);
      }
      tls = tlsMaterialFrom(values, scheme, values.server);
    }
    try {
      s = web ? await webStatus(values.server, values['token-file'], values.ca) : ((await remoteStatus(values.server, tls)) as unknown as PublicStatus);
    } catch (err) {
      if (err instanceof FloatdError) throw err;
      throw new FloatdError('SERVER_UNREACHABLE', (err as Error).message);
    }
  } else {
    s = await offlineStatus(configFrom(io, values), new SystemClock());
  }
  io.out(values.json ? JSON.stringify(s, null, 2) : isPublicStatus(s) ? formatPublicStatus(s) : formatStatus(s));
  return 0;
}
