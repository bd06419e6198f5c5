/**
 * Load benchmark for the TCP lease protocol. Starts `floatd serve` as a child
 * process with a temp data directory and a license key, drives it from this
 * process over loopback, and prints throughput, latency and server memory.
 *
 *   npm run bench -- [--clients 1000] [--seconds 10] [--rate 2000] [--hold 10000]
 *                    [--extra-args 'FLOATD ARGS'] [--server-node-args '--cpu-prof']
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { acquireRelease, closedLoop, connectAll, rssOf, startServer, summary } from './bench-lib.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '10' },
    rate: { type: 'string', default: '2000' },
    hold: { type: 'string', default: '10000' },
    'extra-args': { type: 'string', default: '' },
    'server-node-args': { type: 'string', default: '' },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const RATE = Number(values.rate);
const HOLD = Number(values.hold);

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-bench-'));
  const { child, port } = await startServer(dir, {
    seats: HOLD + CLIENTS,
    maxConnections: HOLD + CLIENTS + 100,
    extraArgs: values['extra-args'] ? values['extra-args'].split(' ') : [],
    nodeArgs: values['server-node-args'] ? values['server-node-args'].split(' ') : [],
  });
  const pid = child.pid!;
  console.log(`floatd pid ${pid} on 127.0.0.1:${port}; ${CLIENTS} clients, ${SECONDS} s per phase`);
  try {
    const clients = await connectAll(port, CLIENTS, 'c');

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
    const steadyLat: number[] = [];
    let sent = 0;
    let next = 0;
    const tickMs = 5;
    const perTick = (RATE * tickMs) / 1000;
    let carry = 0;
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        if (performance.now() - t0 >= SECONDS * 1000) {
          clearInterval(timer);
          resolve();
          return;
        }
        carry += perTick;
        while (carry >= 1) {
          carry -= 1;
          const c = clients[next++ % clients.length]!;
          sent++;
          const s = performance.now();
          void c.raw(c.renewFrame()).then(() => steadyLat.push(performance.now() - s));
        }
      }, tickMs);
    });
    await new Promise((r) => setTimeout(r, 200));
    console.log(summary(`renewals at offered ${RATE}/s`, steadyLat.length, SECONDS, steadyLat) + `   sent ${sent}`);

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
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
