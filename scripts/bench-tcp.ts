/**
 * Load benchmark for the lease protocol. Starts `floatd serve` as a child
 * process with a temp data directory and a license key, drives it from this
 * process over loopback, and prints throughput, latency and server memory.
 * `--transport` picks the door: NDJSON over TCP (default), NDJSON inside TLS
 * (`tls://`), or the web endpoint over HTTPS with keep-alive connections.
 *
 * `--scrape` reads /metrics every second meanwhile, as Prometheus would, to show what metrics cost.
 *
 *   npm run bench -- [--transport tcp|tls|https] [--scrape] [--clients 1000] [--seconds 10] [--rate 2000] [--hold 10000]
 *                    [--extra-args 'FLOATD ARGS'] [--server-node-args '--cpu-prof']
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { acquireRelease, benchCertificate, closedLoop, connectAll, HttpsClient, rssOf, startServer, summary } from './bench-lib.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '2000' },
    hold: { type: 'string', default: '10000' },
    transport: { type: 'string', default: 'tcp' },
    scrape: { type: 'boolean', default: false },
    'extra-args': { type: 'string', default: '' },
    'server-node-args': { type: 'string', default: '' },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const HOLD = Number(values.hold);
const TRANSPORT = values.transport;
if (TRANSPORT !== 'tcp' && TRANSPORT !== 'tls' && TRANSPORT !== 'https') throw new Error('--transport must be tcp, tls or https');

/** Offers `rate` operations per second spread over the clients for `seconds`; the latencies of those answered. */
async function offered(n: number, rate: number, seconds: number, op: (i: number) => Promise<unknown>): Promise<{ sent: number; latencies: number[] }> {
  const latencies: number[] = [];
  let sent = 0;
  let next = 0;
  const tickMs = 5;
  const perTick = (rate * tickMs) / 1000;
  let carry = 0;
  const t0 = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      if (performance.now() - t0 >= seconds * 1000) {
        clearInterval(timer);
        resolve();
        return;
      }
      carry += perTick;
      while (carry >= 1) {
        carry -= 1;
        sent++;
        const s = performance.now();
        void op(next++ % n).then(() => latencies.push(performance.now() - s));
      }
    }, tickMs);
  });
  await new Promise((r) => setTimeout(r, 200));
  return { sent, latencies };
}

/** The web endpoint over HTTPS keep-alive: grants, renewals, and renewals at an offered rate. */
async function https(port: number, ca: Buffer): Promise<void> {
  const clients = Array.from({ length: CLIENTS }, (_, i) => new HttpsClient(port, ca, `w${i}`));
  const grants = await closedLoop(clients, SECONDS, async (c: HttpsClient) => {
    const r = await c.post('/v1/leases', { product: 'bench' });
    const id = (r.body['lease'] as { id: string } | undefined)?.id;
    if (!id) throw new Error(`acquire failed: ${JSON.stringify(r.body)}`);
    await c.post(`/v1/leases/${id}/release`, {});
  });
  console.log(summary('https grants (acquire+release pairs)', grants.count, grants.elapsed, grants.latencies));
  for (const c of clients) c.leaseId = ((await c.post('/v1/leases', { product: 'bench' })).body['lease'] as { id: string }).id;
  const renewals = await closedLoop(clients, SECONDS, async (c: HttpsClient) => {
    const r = await c.post(`/v1/leases/${c.leaseId}/renew`, {});
    if (r.status !== 200) throw new Error(`renew failed: ${JSON.stringify(r.body)}`);
  });
  console.log(summary('https renewals (closed loop)', renewals.count, renewals.elapsed, renewals.latencies));
  const steady = await offered(CLIENTS, RATE, SECONDS, (i) => clients[i]!.post(`/v1/leases/${clients[i]!.leaseId}/renew`, {}));
  console.log(summary(`https renewals at offered ${RATE}/s`, steady.latencies.length, SECONDS, steady.latencies) + `   sent ${steady.sent}`);
  for (const c of clients) c.close();
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-bench-'));
  const cert = TRANSPORT === 'tcp' ? null : benchCertificate(dir);
  const tlsArgs = cert === null ? [] : ['--tls-cert', cert.cert, '--tls-key', cert.key, TRANSPORT === 'tls' ? '--listen' : '--https-listen', TRANSPORT === 'tls' ? 'tls://127.0.0.1:0' : '127.0.0.1:0'];
  const { child, ports } = await startServer(dir, {
    seats: HOLD + CLIENTS,
    maxConnections: HOLD + CLIENTS + 100,
    extraArgs: [...tlsArgs, ...(values['extra-args'] ? values['extra-args'].split(' ') : [])],
    nodeArgs: values['server-node-args'] ? values['server-node-args'].split(' ') : [],
  });
  const pid = child.pid!;
  const port = ports[TRANSPORT]!;
  let scrapes = 0;
  const scraper = values.scrape
    ? setInterval(() => {
        get(`http://127.0.0.1:${ports['http']}/metrics`, (res) => {
          res.resume();
          res.on('end', () => scrapes++);
        }).on('error', () => {});
      }, 1000)
    : null;
  console.log(`floatd pid ${pid}, ${TRANSPORT} on 127.0.0.1:${port}; ${CLIENTS} clients, ${SECONDS} s per phase`);
  try {
    if (TRANSPORT === 'https') {
      await https(port, cert!.ca);
      return;
    }
    const clients = await connectAll(port, CLIENTS, 'c', undefined, cert?.ca);

    // 1. Durable grants: acquire then release, closed loop. Each acquire is a new seat taken in its own transaction.
    const grants = await closedLoop(clients, SECONDS, acquireRelease);
    console.log(summary('grants (acquire+release pairs)', grants.count, grants.elapsed, grants.latencies));

    // 2. Renewals, closed loop.
    for (const c of clients) {
      const r = await c.request({ op: 'acquire' });
      c.leaseId = (r['lease'] as { id: string }).id;
    }
    const renewals = await closedLoop(clients, SECONDS, async (c) => {
      const line = await c.raw(c.renewFrame());
      if (!line.includes('"ok":true')) throw new Error(`renew failed: ${line}`);
    });
    console.log(summary('renewals (closed loop)', renewals.count, renewals.elapsed, renewals.latencies));

    // 3. Steady offered load: RATE renewals/s spread over the clients.
    const steady = await offered(clients.length, RATE, SECONDS, (i) => clients[i]!.raw(clients[i]!.renewFrame()));
    console.log(summary(`renewals at offered ${RATE}/s`, steady.latencies.length, SECONDS, steady.latencies) + `   sent ${steady.sent}`);
    if (TRANSPORT !== 'tcp' || HOLD === 0) {
      for (const c of clients) c.socket.destroy();
      return;
    }

    // 4. Many connected clients holding leases: server memory.
    const before = rssOf(pid);
    const holders = await connectAll(port, HOLD, 'h');
    for (let i = 0; i < holders.length; i += 500) {
      await Promise.all(holders.slice(i, i + 500).map((c) => c.request({ op: 'acquire' })));
    }
    const status = await clients[0]!.request({ op: 'status' });
    const held = status['leasesHeld'] as number;
    const after = rssOf(pid);
    console.log(`connected clients ${CLIENTS + HOLD}, leases held ${held}: server RSS ${after.rssMb.toFixed(0)} MB (before ${before.rssMb.toFixed(0)} MB), peak RSS ${after.peakMb.toFixed(0)} MB`);
    for (const c of [...clients, ...holders]) c.socket.destroy();
  } finally {
    if (scraper !== null) {
      clearInterval(scraper);
      console.log(`/metrics scraped ${scrapes} times, once a second`);
    }
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
