/**
 * Load benchmark for the TCP lease protocol. Starts `floatd serve` as a child
 * process with a temp data directory and a license key, drives it from this
 * process over loopback, and prints throughput, latency and server memory.
 *
 *   npm run bench -- [--clients 1000] [--seconds 10] [--rate 2000] [--hold 10000]
 *                    [--extra-args 'FLOATD ARGS'] [--server-node-args '--cpu-prof']
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { newEd25519KeyPair } from '../src/adapters/crypto/keys.js';
import { issueLicenseKey } from '../src/adapters/crypto/license-keys.js';
import { packageRoot } from '../src/adapters/package-root.js';

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

/**
 * A minimal NDJSON client, one outstanding request at a time like a product
 * instance. It hands back raw reply lines and parses only what a phase needs,
 * so the driver leaves as much of the shared CPU as it can to the server.
 */
class Client {
  private pending: Buffer[] = [];
  private waiter: ((line: string) => void) | null = null;
  private nextId = 1;
  leaseId = '';

  constructor(readonly socket: Socket) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => {
      let start = 0;
      for (let nl = d.indexOf(10); nl >= 0; nl = d.indexOf(10, start)) {
        const part = d.subarray(start, nl);
        const line = this.pending.length === 0 ? part.toString() : Buffer.concat([...this.pending, part]).toString();
        this.pending = [];
        start = nl + 1;
        if (!line.startsWith('{"id"')) continue;
        const w = this.waiter;
        this.waiter = null;
        w?.(line);
      }
      if (start < d.length) this.pending.push(d.subarray(start));
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }

  raw(frame: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiter = resolve;
      this.socket.write(frame);
    });
  }

  async request(msg: Record<string, unknown>): Promise<Record<string, unknown>> {
    return JSON.parse(await this.raw(`${JSON.stringify({ ...msg, id: this.nextId++ })}\n`)) as Record<string, unknown>;
  }

  renewFrame(): string {
    return `{"op":"renew","id":${this.nextId++},"lease":"${this.leaseId}"}\n`;
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function summary(name: string, count: number, seconds: number, latencies: number[]): string {
  latencies.sort((a, b) => a - b);
  return `${name.padEnd(34)} ${String(Math.round(count / seconds)).padStart(7)} ops/s   p50 ${percentile(latencies, 50).toFixed(2)} ms   p99 ${percentile(latencies, 99).toFixed(2)} ms   (${count} ops)`;
}

function rssOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

async function startServer(dir: string, seats: number): Promise<{ child: ChildProcess; port: number }> {
  const vendor = await newEd25519KeyPair();
  writeFileSync(join(dir, 'vendor-public.jwk'), JSON.stringify(vendor.publicJwk));
  const token = await issueLicenseKey(vendor.privateJwk, { licensee: 'bench', product: 'bench', seats, now: Date.now() });
  const main = join(packageRoot(), 'dist', 'src', 'main.js');
  const common = ['--data-dir', join(dir, 'data'), '--vendor-public-key', join(dir, 'vendor-public.jwk')];
  await new Promise<void>((resolve, reject) => {
    const add = spawn(process.execPath, [main, 'license', 'add', token, ...common], { stdio: 'inherit' });
    add.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`license add exited ${code}`))));
  });
  const extra = values['extra-args'] ? values['extra-args'].split(' ') : [];
  const nodeArgs = values['server-node-args'] ? values['server-node-args'].split(' ') : [];
  const child = spawn(process.execPath, [...nodeArgs, main, 'serve', ...common, '--listen', '127.0.0.1:0', ...extra], {
    env: { ...process.env, FLOATD_MAX_CONNECTIONS: String(HOLD + CLIENTS + 100), FLOATD_LOG_FORMAT: 'json', FLOATD_LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /"port":(\d+)[^\n]*"msg":"listening"/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`floatd exited ${code}: ${out}`)));
  });
  return { child, port };
}

async function connectAll(port: number, n: number, prefix: string): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, n - i) }, () => Client.open(port)));
    await Promise.all(batch.map((c, j) => c.request({ op: 'hello', v: 1, client: { user: `${prefix}${i + j}`, host: 'bench', instance: `${prefix}${i + j}` }, product: 'bench' })));
    clients.push(...batch);
  }
  return clients;
}

async function closedLoop(clients: Client[], seconds: number, step: (c: Client) => Promise<void>): Promise<{ count: number; latencies: number[]; elapsed: number }> {
  const latencies: number[] = [];
  let count = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await step(c);
        latencies.push(performance.now() - t0);
        count++;
      }
    }),
  );
  return { count, latencies, elapsed: (performance.now() - start) / 1000 };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'floatd-bench-'));
  const { child, port } = await startServer(dir, HOLD + CLIENTS);
  const pid = child.pid!;
  console.log(`floatd pid ${pid} on 127.0.0.1:${port}; ${CLIENTS} clients, ${SECONDS} s per phase`);
  try {
    const clients = await connectAll(port, CLIENTS, 'c');

    // 1. Durable grants: acquire then release, closed loop. Each acquire is a new seat taken in its own transaction.
    const grants = await closedLoop(clients, SECONDS, async (c) => {
      const r = await c.request({ op: 'acquire' });
      const lease = r['lease'] as { id: string } | undefined;
      if (!lease) throw new Error(`acquire failed: ${JSON.stringify(r)}`);
      await c.request({ op: 'release', lease: lease.id });
    });
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
