/**
 * Load benchmark for the lease server. Each scenario starts `floatd serve` as
 * a child process on a fresh temp data directory with a license key, drives it
 * from this process over loopback, and adds rows to one table, printed at the
 * end and written as JSON (bench-results/<time>.json, or --out).
 *
 * Scenarios (--scenario, a comma list, or `all`):
 *   renew   closed-loop renewals at each of --renew-clients (500,1000), beside a
 *           bare NDJSON server (bench-bare.ts) measured in the same run: the ratio
 *   grant   closed-loop grants (acquire + release) over --clients
 *   steady  --rate renewals/s offered over --clients: latency
 *   https   closed-loop renewals over HTTPS keep-alive vs NDJSON over TCP, --clients each
 *   hold    --hold clients connected, each holding a lease: server RSS per client
 *   storm   --storm clients holding leases; the server restarts; all reconnect, hello
 *           and renew: the time until all have renewed, and how many lost their lease
 *   expiry  --expiry leases expiring in the same second while --expiry-rate renewals/s
 *           are offered: how long the sweep takes, renewal latency meanwhile
 *   scale   closed-loop renewals (first of --renew-clients) with --scale leases held:
 *           server CPU per renewal at each level
 *
 * Every figure is durable (each reply after its commit) and every lease token
 * signed, with default settings. `--transport tls|https` runs grant/renew/steady
 * over NDJSON inside TLS or the web endpoint instead of TCP. `--scrape` reads
 * /metrics every second meanwhile. `--floatd path/to/main.js` runs another build
 * (to compare two commits on the same machine back to back).
 *
 * Clients connect from 127.0.0.2, 127.0.0.3, … (--sources of them) so that
 * 100,000 sockets do not run out of ephemeral ports. The client process and the
 * server each need a file descriptor per client: the script raises its own
 * limit up to the hard limit (re-running itself under `ulimit -n`), and when
 * the hard limit is lower it says what to raise and runs with what fits.
 *
 *   npm run bench -- [--scenario renew,grant,steady] [--clients 1000] [--renew-clients 500,1000]
 *                    [--seconds 10] [--rate 5000] [--hold 100000] [--storm 100000]
 *                    [--expiry 100000] [--expiry-rate 2000] [--scale 1000,10000,100000]
 *                    [--no-baseline] [--transport tcp|tls|https] [--scrape] [--sources 8]
 *                    [--storm-signal SIGTERM|SIGKILL] [--out file.json] [--floatd main.js]
 *                    [--extra-args 'FLOATD ARGS'] [--server-node-args '--cpu-prof']
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { get } from 'node:http';
import { createServer } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { packageRoot } from '../src/adapters/package-root.js';
import {
  acquireRelease, benchCertificate, Client, closedLoop, connectAll, cpuSecondsOf, fdLimits, HttpsClient, percentile, rssOf,
  setSourceAddresses, sourceAddress, startServer, stopServer, type BenchServer, type ServerOptions,
} from './bench-lib.js';

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'renew,grant,steady' },
    clients: { type: 'string', default: '1000' },
    'renew-clients': { type: 'string', default: '500,1000' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '5000' },
    hold: { type: 'string', default: '100000' },
    storm: { type: 'string', default: '100000' },
    expiry: { type: 'string', default: '100000' },
    'expiry-rate': { type: 'string', default: '2000' },
    scale: { type: 'string', default: '1000,10000,100000' },
    'no-baseline': { type: 'boolean', default: false },
    transport: { type: 'string', default: 'tcp' },
    scrape: { type: 'boolean', default: false },
    sources: { type: 'string', default: '8' },
    'storm-signal': { type: 'string', default: 'SIGTERM' },
    out: { type: 'string' },
    floatd: { type: 'string' },
    'extra-args': { type: 'string', default: '' },
    'server-node-args': { type: 'string', default: '' },
  },
});

const SCENARIOS = ['renew', 'grant', 'steady', 'https', 'hold', 'storm', 'expiry', 'scale'] as const;
type Scenario = (typeof SCENARIOS)[number];
const chosen: Scenario[] = values.scenario === 'all' ? [...SCENARIOS] : (values.scenario.split(',') as Scenario[]);
for (const s of chosen) if (!SCENARIOS.includes(s)) throw new Error(`--scenario: unknown "${s}" (scenarios: ${SCENARIOS.join(', ')}, all)`);
const ints = (name: string, v: string): number[] =>
  v.split(',').map((x) => {
    const n = Number(x);
    if (!Number.isInteger(n) || n < 0) throw new Error(`--${name}: "${x}" is not a whole number`);
    return n;
  });
const CLIENTS = ints('clients', values.clients)[0]!;
const RENEW_CLIENTS = ints('renew-clients', values['renew-clients']);
const SECONDS = Number(values.seconds);
const RATE = ints('rate', values.rate)[0]!;
let HOLD = ints('hold', values.hold)[0]!;
let STORM = ints('storm', values.storm)[0]!;
const EXPIRY = ints('expiry', values.expiry)[0]!;
const EXPIRY_RATE = ints('expiry-rate', values['expiry-rate'])[0]!;
const SCALE = ints('scale', values.scale);
const TRANSPORT = values.transport;
if (TRANSPORT !== 'tcp' && TRANSPORT !== 'tls' && TRANSPORT !== 'https') throw new Error('--transport must be tcp, tls or https');
const STORM_SIGNAL = values['storm-signal'] as NodeJS.Signals;
if (STORM_SIGNAL !== 'SIGTERM' && STORM_SIGNAL !== 'SIGKILL') throw new Error('--storm-signal must be SIGTERM or SIGKILL');
setSourceAddresses(ints('sources', values.sources)[0]!);
const MAIN = values.floatd === undefined ? undefined : resolve(values.floatd);

interface Row {
  readonly scenario: string;
  readonly measure: string;
  readonly value: number;
  readonly unit: string;
  readonly target?: string;
}
const rows: Row[] = [];
const details: Record<string, unknown> = {};
const notes: string[] = [];

function row(scenario: string, measure: string, value: number, unit: string, target?: string): void {
  rows.push({ scenario, measure, value, unit, ...(target === undefined ? {} : { target }) });
  const v = Number.isInteger(value) ? String(value) : value.toFixed(value < 10 ? 2 : 1);
  console.log(`  ${scenario.padEnd(7)} ${measure.padEnd(48)} ${v.padStart(10)} ${unit}`);
}

/**
 * Each client and each server socket is a file descriptor, in this process
 * and in the server alike. Raise the soft limit to what the run needs (up to
 * the hard limit) by running again under `ulimit -n`; Node cannot set it itself.
 */
function ensureFdLimit(): void {
  const needed = Math.max(CLIENTS, ...RENEW_CLIENTS, chosen.includes('hold') ? HOLD : 0, chosen.includes('storm') ? STORM : 0) + 256;
  const { soft, hard } = fdLimits();
  if (soft < needed && hard > soft && process.env['FLOATD_BENCH_FD_RAISED'] === undefined) {
    const to = Math.min(hard, needed);
    const r = spawnSync('/bin/sh', ['-c', `ulimit -n ${to} && exec "$0" "$@"`, process.execPath, ...process.execArgv, process.argv[1]!, ...process.argv.slice(2)], {
      stdio: 'inherit',
      env: { ...process.env, FLOATD_BENCH_FD_RAISED: '1' },
    });
    process.exit(r.status ?? 1);
  }
  const limit = Math.min(soft, hard);
  if (needed <= limit) return;
  const fits = Math.max(0, limit - 256);
  const note =
    `this run needs ${needed} file descriptors per process (client and server); the limit is ${limit} (hard ${hard}). ` +
    `Raise the hard limit as root (\`ulimit -Hn ${needed}\` in the shell that runs npm, \`prlimit --nofile=${needed}:${needed} --pid <pid>\`, ` +
    `LimitNOFILE=${needed} under systemd, \`docker run --ulimit nofile=${needed}:${needed}\`); fs.nr_open must allow it too. ` +
    `Until then hold and storm run with ${fits} clients.`;
  console.warn(note);
  notes.push(note);
  HOLD = Math.min(HOLD, fits);
  STORM = Math.min(STORM, fits);
}

function serverOptions(seats: number, connections: number, more: Partial<ServerOptions> = {}): ServerOptions {
  return {
    seats,
    maxConnections: connections + 100,
    main: MAIN,
    extraArgs: [...(values['extra-args'] ? values['extra-args'].split(' ') : []), ...(more.extraArgs ?? [])],
    nodeArgs: values['server-node-args'] ? values['server-node-args'].split(' ') : [],
    ...(more.port === undefined ? {} : { port: more.port }),
    ...(more.env === undefined ? {} : { env: more.env }),
  };
}

/** Runs `fn` against a fresh server on a fresh data directory, then stops it and removes the directory. */
async function withServer<T>(opts: ServerOptions, fn: (server: BenchServer, dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-bench-'));
  let server: BenchServer | null = null;
  let scrapes = 0;
  let scraper: NodeJS.Timeout | null = null;
  try {
    server = await startServer(dir, opts);
    const http = server.ports['http'];
    if (values.scrape) {
      scraper = setInterval(() => {
        get(`http://127.0.0.1:${http}/metrics`, (res) => {
          res.resume();
          res.on('end', () => scrapes++);
        }).on('error', () => {});
      }, 1000);
    }
    return await fn(server, dir);
  } finally {
    if (scraper !== null) clearInterval(scraper);
    if (server !== null) await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Measures a closed loop and the server CPU it took. */
async function measured<C>(pid: number, clients: readonly C[], step: (c: C) => Promise<void>) {
  const cpu0 = cpuSecondsOf(pid);
  const r = await closedLoop(clients, SECONDS, step);
  const cpu = cpuSecondsOf(pid) - cpu0;
  r.latencies.sort((a, b) => a - b);
  return { rate: r.count / r.elapsed, count: r.count, p50: percentile(r.latencies, 50), p99: percentile(r.latencies, 99), cpuUs: (cpu / r.count) * 1e6, serverCpu: cpu / r.elapsed };
}

async function acquireEach(clients: readonly Client[]): Promise<void> {
  for (let i = 0; i < clients.length; i += 500) {
    await Promise.all(
      clients.slice(i, i + 500).map(async (c) => {
        const r = await c.request({ op: 'acquire' });
        const lease = r['lease'] as { id: string } | undefined;
        if (lease === undefined) throw new Error(`acquire failed: ${JSON.stringify(r)}`);
        c.leaseId = lease.id;
      }),
    );
  }
}

const renewStep = async (c: Client): Promise<void> => {
  const line = await c.raw(c.renewFrame());
  if (!line.includes('"ok":true')) throw new Error(`renew failed: ${line}`);
};

/** The bare NDJSON server: closed-loop "renewals" it parses and answers with nothing behind them. */
async function bareRenewals(n: number) {
  const child = spawn(process.execPath, [join(packageRoot(), 'dist', 'scripts', 'bench-bare.js')], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
      child.once('exit', (code) => reject(new Error(`bare server exited ${code}`)));
    });
    const clients = await Promise.all(Array.from({ length: n }, (_, i) => Client.open(port, undefined, sourceAddress(i))));
    for (const c of clients) c.leaseId = '00000000-0000-4000-8000-000000000000';
    const r = await measured(child.pid!, clients, renewStep);
    for (const c of clients) c.socket.destroy();
    return r;
  } finally {
    child.kill('SIGTERM');
  }
}

async function renewScenario(): Promise<void> {
  for (const n of RENEW_CLIENTS) {
    const bare = values['no-baseline'] ? null : await bareRenewals(n);
    const floatd = await withServer(serverOptions(n, n), async (srv) => {
      const clients = await connectAll(srv.port, n, 'c');
      await acquireEach(clients);
      const r = await measured(srv.child.pid!, clients, renewStep);
      for (const c of clients) c.socket.destroy();
      return r;
    });
    details[`renew-${n}`] = { floatd, bare };
    row('renew', `renewals/s, ${n} clients, closed loop`, Math.round(floatd.rate), '/s');
    row('renew', `  p50 / p99, ${n} clients`, floatd.p99, `ms p99 (p50 ${floatd.p50.toFixed(1)} ms)`);
    row('renew', `  server CPU per renewal, ${n} clients`, Math.round(floatd.cpuUs), 'µs');
    if (bare !== null) {
      row('renew', `bare NDJSON server, ${n} clients, same loop`, Math.round(bare.rate), '/s');
      row('renew', `ratio floatd / bare, ${n} clients`, floatd.rate / bare.rate, '', '≥ 0.5');
    }
  }
}

async function grantScenario(): Promise<void> {
  const { opts, ca } = transportOptions(CLIENTS, CLIENTS);
  const r = await withServer(opts, async (srv) => {
    if (TRANSPORT === 'https') {
      const clients = Array.from({ length: CLIENTS }, (_, i) => new HttpsClient(srv.ports['https']!, ca!, `w${i}`));
      const m = await measured(srv.child.pid!, clients, async (c) => {
        const a = await c.post('/v1/leases', { product: 'bench' });
        const id = (a.body['lease'] as { id: string } | undefined)?.id;
        if (!id) throw new Error(`acquire failed: ${JSON.stringify(a.body)}`);
        await c.post(`/v1/leases/${id}/release`, {});
      });
      for (const c of clients) c.close();
      return m;
    }
    const clients = await connectAll(srv.ports[TRANSPORT]!, CLIENTS, 'c', undefined, ca);
    const m = await measured(srv.child.pid!, clients, acquireRelease);
    for (const c of clients) c.socket.destroy();
    return m;
  });
  details['grant'] = r;
  row('grant', `grants/s (acquire+release), ${CLIENTS} clients, ${TRANSPORT}`, Math.round(r.rate), '/s', '≥ 15000');
  row('grant', `  p99 per acquire+release pair`, r.p99, `ms (p50 ${r.p50.toFixed(1)} ms)`);
  row('grant', `  server CPU per grant+release`, Math.round(r.cpuUs), 'µs');
}

/** Server options for a transport: TLS and HTTPS listeners get a certificate made for the run, and the CA to trust. */
function transportOptions(seats: number, connections: number, transport = TRANSPORT): { opts: ServerOptions; ca?: Buffer } {
  if (transport === 'tcp') return { opts: serverOptions(seats, connections) };
  const cert = benchCertificate(mkdtempSync(join(tmpdir(), 'floatd-bench-cert-')));
  const extraArgs = ['--tls-cert', cert.cert, '--tls-key', cert.key, ...(transport === 'tls' ? ['--listen', 'tls://127.0.0.1:0'] : ['--https-listen', '127.0.0.1:0'])];
  return { opts: serverOptions(seats, connections, { extraArgs }), ca: cert.ca };
}

/** Offers `rate` operations per second spread over `n` clients until `until()`; each answered one's send time and latency. */
async function offered(n: number, rate: number, until: () => boolean, op: (i: number) => Promise<unknown>): Promise<{ sent: number; samples: Array<[number, number]> }> {
  const samples: Array<[number, number]> = [];
  let sent = 0;
  let next = 0;
  const tickMs = 5;
  const perTick = (rate * tickMs) / 1000;
  let carry = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (until()) {
        clearInterval(timer);
        resolve();
        return;
      }
      carry += perTick;
      while (carry >= 1) {
        carry -= 1;
        sent++;
        const s = performance.now();
        const at = Date.now();
        void op(next++ % n).then(() => samples.push([at, performance.now() - s]));
      }
    }, tickMs);
  });
  await new Promise((r) => setTimeout(r, 500));
  return { sent, samples };
}

async function steadyScenario(): Promise<void> {
  const r = await withServer(serverOptions(CLIENTS, CLIENTS), async (srv) => {
    const clients = await connectAll(srv.port, CLIENTS, 'c');
    await acquireEach(clients);
    const end = performance.now() + SECONDS * 1000;
    const cpu0 = cpuSecondsOf(srv.child.pid!);
    const o = await offered(clients.length, RATE, () => performance.now() >= end, (i) => clients[i]!.raw(clients[i]!.renewFrame()));
    const cpu = cpuSecondsOf(srv.child.pid!) - cpu0;
    for (const c of clients) c.socket.destroy();
    const lat = o.samples.map((s) => s[1]).sort((a, b) => a - b);
    return { sent: o.sent, answered: lat.length, p50: percentile(lat, 50), p99: percentile(lat, 99), max: lat[lat.length - 1] ?? NaN, serverCpu: cpu / SECONDS };
  });
  details['steady'] = r;
  row('steady', `p99 at ${RATE} renewals/s offered, ${CLIENTS} clients`, r.p99, `ms (p50 ${r.p50.toFixed(2)} ms)`, '≤ 5 ms');
  row('steady', `  answered / sent`, r.answered, `of ${r.sent}`);
  row('steady', `  server CPU busy`, r.serverCpu * 100, '% of one core');
}

async function httpsScenario(): Promise<void> {
  const { opts, ca: caOrNone } = transportOptions(CLIENTS * 2, CLIENTS * 2, 'https');
  const ca = caOrNone!;
  const r = await withServer(opts, async (srv) => {
    const tcp = await connectAll(srv.port, CLIENTS, 't');
    await acquireEach(tcp);
    const viaTcp = await measured(srv.child.pid!, tcp, renewStep);
    for (const c of tcp) c.socket.destroy();
    const web = Array.from({ length: CLIENTS }, (_, i) => new HttpsClient(srv.ports['https']!, ca, `w${i}`));
    for (let i = 0; i < web.length; i += 200) {
      await Promise.all(web.slice(i, i + 200).map(async (c) => (c.leaseId = ((await c.post('/v1/leases', { product: 'bench' })).body['lease'] as { id: string }).id)));
    }
    const viaHttps = await measured(srv.child.pid!, web, async (c) => {
      const res = await c.post(`/v1/leases/${c.leaseId}/renew`, {});
      if (res.status !== 200) throw new Error(`renew failed: ${JSON.stringify(res.body)}`);
    });
    for (const c of web) c.close();
    return { tcp: viaTcp, https: viaHttps };
  });
  details['https'] = r;
  row('https', `TCP renewals/s, ${CLIENTS} clients`, Math.round(r.tcp.rate), '/s');
  row('https', `HTTPS keep-alive renewals/s, ${CLIENTS} clients`, Math.round(r.https.rate), `/s (p99 ${r.https.p99.toFixed(1)} ms)`);
  row('https', `ratio HTTPS / TCP`, r.https.rate / r.tcp.rate, '', '≥ 0.5');
}

async function holdScenario(): Promise<void> {
  const r = await withServer(serverOptions(HOLD, HOLD), async (srv) => {
    const pid = srv.child.pid!;
    const before = rssOf(pid).rssMb;
    const t0 = performance.now();
    const clients = await connectAll(srv.port, HOLD, 'h');
    await acquireEach(clients);
    const seconds = (performance.now() - t0) / 1000;
    const status = await clients[0]!.request({ op: 'status' });
    const after = rssOf(pid);
    for (const c of clients) c.socket.destroy();
    return { clients: HOLD, leasesHeld: status['leasesHeld'] as number, rssBeforeMb: before, rssMb: after.rssMb, peakMb: after.peakMb, connectSeconds: seconds };
  });
  details['hold'] = r;
  const perClientKb = ((r.rssMb - r.rssBeforeMb) * 1024) / r.clients;
  row('hold', `clients connected, each holding a lease`, r.leasesHeld, `leases (${r.clients} clients)`);
  row('hold', `  server RSS with them`, Math.round(r.rssMb), `MB (${Math.round(r.rssBeforeMb)} MB idle, peak ${Math.round(r.peakMb)} MB)`);
  row('hold', `  RSS per connected client`, perClientKb, 'KB');
  if (r.clients < 100_000) row('hold', `  RSS at 100,000 clients (extrapolated)`, Math.round(r.rssBeforeMb + (perClientKb * 100_000) / 1024), 'MB', '≤ 1024 MB');
  else row('hold', `  RSS at 100,000 clients`, Math.round(r.rssMb), 'MB', '≤ 1024 MB');
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** One instance coming back after a restart: reconnect (retrying while refused), hello as before, renew its lease. */
async function comeBack(port: number, i: number, leaseId: string, deadline: number): Promise<'renewed' | 'lost' | 'gave up'> {
  while (performance.now() < deadline) {
    let c: Client | null = null;
    try {
      c = await Client.open(port, undefined, sourceAddress(i));
      await c.rawOrClose(`{"op":"hello","v":1,"id":1,"client":{"user":"s${i}","host":"bench","instance":"s${i}"},"product":"bench"}\n`);
      const line = await c.rawOrClose(`{"op":"renew","id":2,"lease":"${leaseId}"}\n`);
      c.socket.destroy();
      return line.includes('"ok":true') ? 'renewed' : 'lost';
    } catch {
      c?.socket.destroy();
      await new Promise((r) => setTimeout(r, 100 + Math.random() * 200));
    }
  }
  return 'gave up';
}

async function stormScenario(): Promise<void> {
  const port = await freePort();
  const opts = serverOptions(STORM, STORM, { port });
  const r = await withServer(opts, async (srv, dir) => {
    const clients = await connectAll(port, STORM, 's');
    await acquireEach(clients);
    const leases = clients.map((c) => c.leaseId);
    await stopServer(srv, STORM_SIGNAL);
    for (const c of clients) c.socket.destroy();
    const again = await startServer(dir, { ...opts, restart: true });
    // withServer stops the server it started; this one is stopped here.
    try {
      const t0 = again.listeningAt;
      const deadline = performance.now() + 120_000;
      const done: number[] = [];
      const outcomes = await Promise.all(
        leases.map(async (id, i) => {
          const o = await comeBack(port, i, id, deadline);
          done.push(performance.now() - t0);
          return o;
        }),
      );
      done.sort((a, b) => a - b);
      return {
        clients: STORM,
        signal: STORM_SIGNAL,
        renewed: outcomes.filter((o) => o === 'renewed').length,
        lost: outcomes.filter((o) => o === 'lost').length,
        gaveUp: outcomes.filter((o) => o === 'gave up').length,
        allSeconds: done[done.length - 1]! / 1000,
        p50Seconds: percentile(done, 50) / 1000,
      };
    } finally {
      await stopServer(again);
    }
  });
  details['storm'] = r;
  row('storm', `${r.clients} clients back after a restart (${r.signal}): all renewed in`, r.allSeconds, `s (half in ${r.p50Seconds.toFixed(1)} s)`, '≤ 10 s');
  row('storm', `  renewed / lost / gave up`, r.renewed, `/ ${r.lost} / ${r.gaveUp}`, 'none lost');
}

/** Leases held without a connection: each is acquired on a connection of its own that then closes. */
async function fillLeases(port: number, from: number, to: number, prefix: string): Promise<void> {
  for (let i = from; i < to; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, to - i) }, async (_, j) => {
        const c = await Client.open(port, undefined, sourceAddress(i + j));
        await c.rawOrClose(`{"op":"hello","v":1,"id":1,"client":{"user":"${prefix}${i + j}","host":"bench","instance":"${prefix}${i + j}"},"product":"bench"}\n`);
        const line = await c.rawOrClose('{"op":"acquire","id":2}\n');
        if (!line.includes('"ok":true')) throw new Error(`acquire failed: ${line}`);
        c.socket.destroy();
      }),
    );
  }
}

async function expiryScenario(): Promise<void> {
  const opts = serverOptions(EXPIRY + CLIENTS, CLIENTS + 500);
  const r = await withServer(opts, async (srv, dir) => {
    await fillLeases(srv.port, 0, EXPIRY, 'e');
    // Stopped, the leases are set to expire in the same second, a few seconds after the restart.
    await stopServer(srv);
    const at = Date.now() + 6_000 + Math.ceil(EXPIRY / 50_000) * 1000;
    const db = new Database(join(dir, 'data', 'floatd.db'));
    db.prepare("UPDATE leases SET expires_at = ? + (rowid % 1000) WHERE user LIKE 'e%'").run(at);
    db.close();
    const again = await startServer(dir, { ...opts, restart: true });
    try {
      const pid = again.child.pid!;
      const clients = await connectAll(again.port, CLIENTS, 'c');
      await acquireEach(clients);
      if (Date.now() > at - 1000) notes.push('expiry: the renewing clients were not ready a second before the leases expired; raise the head start');
      // Watched in the database (a reader beside the server's writer), not with `status`, which reads every lease.
      const watch = new Database(join(dir, 'data', 'floatd.db'), { readonly: true });
      const left = watch.prepare<[number], number>('SELECT COUNT(*) FROM (SELECT 1 FROM leases WHERE expires_at <= ? LIMIT 1)').pluck();
      let sweptAt = 0;
      const poll = (async () => {
        while (sweptAt === 0) {
          await new Promise((res) => setTimeout(res, 10));
          if (Date.now() < at + 999) continue;
          if (left.get(at + 999) === 0) sweptAt = Date.now();
          else if (Date.now() > at + 120_000) sweptAt = -1;
        }
        watch.close();
      })();
      const rssBefore = rssOf(pid).rssMb;
      const o = await offered(clients.length, EXPIRY_RATE, () => sweptAt !== 0 && Date.now() > sweptAt + 1000, (i) => clients[i]!.raw(clients[i]!.renewFrame()));
      await poll;
      for (const c of clients) c.socket.destroy();
      const during = o.samples.filter(([t]) => t >= at - 1000 && t <= sweptAt + 1000).map((s) => s[1]).sort((a, b) => a - b);
      return {
        leases: EXPIRY,
        sweepSeconds: sweptAt < 0 ? Infinity : (sweptAt - at - 999) / 1000,
        renewalsDuring: during.length,
        p50: percentile(during, 50),
        p99: percentile(during, 99),
        max: during[during.length - 1] ?? NaN,
        rssBeforeMb: rssBefore,
      };
    } finally {
      await stopServer(again);
    }
  });
  details['expiry'] = r;
  row('expiry', `${r.leases} leases expiring within one second: swept in`, Math.max(0, r.sweepSeconds), 's after the last expiry', '≤ 2 s');
  row('expiry', `  renewal p99 meanwhile (${EXPIRY_RATE}/s offered)`, r.p99, `ms (max ${r.max.toFixed(0)} ms, ${r.renewalsDuring} renewals)`, '≤ 50 ms');
}

async function scaleScenario(): Promise<void> {
  const n = RENEW_CLIENTS[0]!;
  const top = Math.max(...SCALE);
  const r = await withServer(serverOptions(top + n, n + 500), async (srv) => {
    const clients = await connectAll(srv.port, n, 'c');
    await acquireEach(clients);
    const levels: Array<{ held: number } & Awaited<ReturnType<typeof measured>>> = [];
    let filled = n;
    for (const held of [...SCALE].sort((a, b) => a - b)) {
      if (held > filled) await fillLeases(srv.port, filled, held, 'x');
      filled = Math.max(filled, held);
      levels.push({ held: filled, ...(await measured(srv.child.pid!, clients, renewStep)) });
    }
    for (const c of clients) c.socket.destroy();
    return levels;
  });
  details['scale'] = r;
  for (const l of r) row('scale', `${l.held} leases held: renewals/s, ${n} clients`, Math.round(l.rate), `/s, ${Math.round(l.cpuUs)} µs server CPU each`);
  const costs = r.map((l) => l.cpuUs);
  row('scale', `  CPU per renewal, most / least`, Math.max(...costs) / Math.min(...costs), '', '≤ 1.2');
}

function commitOf(): string {
  try {
    if (MAIN !== undefined) return MAIN;
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { cwd: packageRoot(), encoding: 'utf8' }).trim() === '' ? '' : ' + uncommitted changes';
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: packageRoot(), encoding: 'utf8' }).trim() + dirty;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  ensureFdLimit();
  const started = new Date();
  const load = loadavg()[0]!;
  console.log(`floatd bench: ${chosen.join(', ')}; ${cpus().length} CPUs, load ${load.toFixed(2)}; ${SECONDS} s per loop; clients from ${sourceAddress(0)} on`);
  const run: Record<Scenario, () => Promise<void>> = {
    renew: renewScenario, grant: grantScenario, steady: steadyScenario, https: httpsScenario,
    hold: holdScenario, storm: stormScenario, expiry: expiryScenario, scale: scaleScenario,
  };
  for (const s of chosen) await run[s]();

  const commit = commitOf();
  console.log(`\nfloatd ${commit}, node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? 'CPU'}, load ${load.toFixed(2)} at start`);
  const fmt = (v: number) => (Number.isInteger(v) ? v.toLocaleString('en-US') : v.toFixed(v < 10 ? 2 : 1));
  const w = Math.max(...rows.map((r) => r.measure.length));
  console.log(`${'scenario'.padEnd(8)} ${'measure'.padEnd(w)} ${'value'.padStart(10)}  unit${' '.repeat(30)}target`);
  for (const r of rows) console.log(`${r.scenario.padEnd(8)} ${r.measure.padEnd(w)} ${fmt(r.value).padStart(10)}  ${r.unit.padEnd(34)}${r.target ?? ''}`);
  for (const n of notes) console.log(`note: ${n}`);

  const out = values.out ?? join(packageRoot(), 'bench-results', `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, `${JSON.stringify({ commit, started: started.toISOString(), node: process.version, cpus: cpus().length, loadAtStart: load, args: process.argv.slice(2), rows, details, notes }, null, 2)}\n`);
  console.log(`results: ${out}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
