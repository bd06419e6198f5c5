/**
 * Slow-reader benchmark: clients that send requests and never read the
 * replies, against one well-behaved client renewing its lease. Starts
 * `floatd serve` as a child process (default settings, so the default
 * backpressure bounds), opens `--clients` connections that say hello and then
 * pipeline `status`, `ping` and `renew` requests (a status reply is a hundred
 * times its request) without ever reading, and meanwhile renews one lease
 * every `--interval` ms on its own connection. Prints the server's RSS before,
 * at its peak and at the end, the renewal latencies, and what /metrics says of
 * backpressure.
 *
 *   node dist/scripts/bench-slow-readers.js [--clients 1000] [--seconds 15] [--interval 10] [--extra-args 'FLOATD ARGS']
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { get } from 'node:http';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, percentile, rssOf, startServer } from './bench-lib.js';

const { values } = parseArgs({
  options: {
    clients: { type: 'string', default: '1000' },
    seconds: { type: 'string', default: '15' },
    interval: { type: 'string', default: '10' },
    'extra-args': { type: 'string', default: '' },
  },
});
const CLIENTS = Number(values.clients);
const SECONDS = Number(values.seconds);
const INTERVAL = Number(values.interval);

/** What one non-reader writes each time its socket takes more: requests whose replies are far larger than they are. */
const FLOOD = Buffer.from(('{"op":"status"}\n'.repeat(40) + '{"op":"ping","id":1}\n'.repeat(10) + '{"op":"renew","id":2,"lease":"none"}\n'.repeat(10)).repeat(20));

/** A client that says hello, then writes requests as fast as the server takes them, and never reads a byte. */
function nonReader(port: number, i: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port }, () => {
      s.pause();
      s.write(`${JSON.stringify({ op: 'hello', v: 1, id: 0, client: { user: `slow${i}`, host: 'bench', instance: `slow${i}` }, product: 'bench' })}\n`);
      const flood = () => {
        while (!s.destroyed && s.write(FLOOD));
      };
      s.on('drain', flood);
      flood();
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Reads a metric's value from the Prometheus text. */
function metric(text: string, name: string): number {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

function scrape(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-bench-slow-'));
  const { child, ports } = await startServer(dir, {
    seats: CLIENTS + 100,
    maxConnections: CLIENTS + 100,
    extraArgs: values['extra-args'] ? values['extra-args'].split(' ') : [],
  });
  const pid = child.pid!;
  const port = ports['tcp']!;
  try {
    const good = await Client.open(port);
    await good.request({ op: 'hello', v: 1, client: { user: 'good', host: 'bench', instance: 'good' }, product: 'bench' });
    good.leaseId = ((await good.request({ op: 'acquire' }))['lease'] as { id: string }).id;
    for (let i = 0; i < 200; i++) await good.raw(good.renewFrame());
    const before = rssOf(pid);
    console.log(`floatd pid ${pid} on 127.0.0.1:${port}: ${CLIENTS} clients that never read, ${SECONDS} s; one client renews every ${INTERVAL} ms`);

    let peak = before.rssMb;
    const sampler = setInterval(() => {
      try {
        peak = Math.max(peak, rssOf(pid).rssMb);
      } catch {
        // The server is gone; main() reports it.
      }
    }, 100);
    const slow: Socket[] = [];
    for (let i = 0; i < CLIENTS; i += 100) {
      slow.push(...(await Promise.all(Array.from({ length: Math.min(100, CLIENTS - i) }, (_, j) => nonReader(port, i + j)))));
    }
    const latencies: number[] = [];
    let failed = 0;
    const end = performance.now() + SECONDS * 1000;
    while (performance.now() < end) {
      const t0 = performance.now();
      const reply = await good.raw(good.renewFrame());
      latencies.push(performance.now() - t0);
      if (!reply.includes('"ok":true')) failed++;
      const wait = INTERVAL - (performance.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    clearInterval(sampler);
    const after = rssOf(pid);
    const text = await scrape(ports['http']!);
    const secondHalf = latencies.slice(latencies.length >> 1).sort((a, b) => a - b);
    latencies.sort((a, b) => a - b);
    const open = slow.filter((s) => !s.destroyed && !s.readableEnded).length;
    console.log(`server RSS: before ${before.rssMb.toFixed(0)} MB, peak ${peak.toFixed(0)} MB, end ${after.rssMb.toFixed(0)} MB`);
    console.log(
      `well-behaved renewals: ${latencies.length} (${failed} failed)   p50 ${percentile(latencies, 50).toFixed(2)} ms   p99 ${percentile(latencies, 99).toFixed(2)} ms   max ${latencies.at(-1)!.toFixed(2)} ms`,
    );
    console.log(`  of which the second half: p50 ${percentile(secondHalf, 50).toFixed(2)} ms   p99 ${percentile(secondHalf, 99).toFixed(2)} ms`);
    console.log(
      `metrics: unsent reply bytes ${metric(text, 'floatd_unsent_reply_bytes')}, connections paused now ${metric(text, 'floatd_connections_paused')}, ` +
        `pauses ${metric(text, 'floatd_connections_paused_total')}, slow readers dropped ${metric(text, 'floatd_slow_readers_dropped_total')}, ` +
        `open connections ${metric(text, 'floatd_tcp_connections')}; non-readers still connected (as they see it) ${open}`,
    );
    const mb = (name: string) => (metric(text, name) / 1048576).toFixed(0);
    console.log(`server memory: V8 heap used ${mb('floatd_nodejs_heap_size_used_bytes')} MB of ${mb('floatd_nodejs_heap_size_total_bytes')} MB, external ${mb('floatd_nodejs_external_memory_bytes')} MB`);
    for (const s of slow) s.destroy();
    good.socket.destroy();
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
