/** What the benchmark scripts share: a lean NDJSON client, a server launcher, and figures. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { readFileSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { newEd25519KeyPair } from '../src/adapters/crypto/keys.js';
import { issueLicenseKey } from '../src/adapters/crypto/license-keys.js';
import { packageRoot } from '../src/adapters/package-root.js';

/**
 * A minimal NDJSON client, one outstanding request at a time like a product
 * instance. It hands back raw reply lines and parses only what a phase needs,
 * so the driver leaves as much of the shared CPU as it can to the server.
 */
export class Client {
  private pending: Buffer[] = [];
  /** Those waiting for a reply, oldest first (a connection answers in order). */
  private waiters: Array<(line: string) => void> = [];
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
        this.waiters.shift()?.(line);
      }
      if (start < d.length) this.pending.push(d.subarray(start));
    });
    socket.on('error', () => {});
  }

  /**
   * Connects over TCP, or inside TLS when given the CA to trust, from
   * `localAddress` (a loopback address of its own, so many clients do not run
   * out of the ephemeral ports of one source address).
   */
  static open(port: number, ca?: Buffer, localAddress?: string): Promise<Client> {
    return new Promise((resolve, reject) => {
      const s = ca === undefined
        ? connect({ host: '127.0.0.1', port, localAddress }, () => resolve(new Client(s)))
        : tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', ...{ localAddress } }, () => resolve(new Client(s)));
      s.once('error', reject);
    });
  }

  /** Resolves with the next reply line, or rejects when the connection ends first. */
  rawOrClose(frame: string): Promise<string> {
    return new Promise((resolve, reject) => {
      const closed = () => reject(new Error('connection closed'));
      this.socket.once('close', closed);
      this.waiters.push((line) => {
        this.socket.off('close', closed);
        resolve(line);
      });
      this.socket.write(frame);
    });
  }

  raw(frame: string): Promise<string> {
    return new Promise((resolve) => {
      this.waiters.push(resolve);
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

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function summary(name: string, count: number, seconds: number, latencies: number[]): string {
  latencies.sort((a, b) => a - b);
  return `${name.padEnd(34)} ${String(Math.round(count / seconds)).padStart(7)} ops/s   p50 ${percentile(latencies, 50).toFixed(2)} ms   p99 ${percentile(latencies, 99).toFixed(2)} ms   (${count} ops)`;
}

export function rssOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (key: string) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(status)?.[1] ?? 0);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

export interface ServerOptions {
  readonly seats: number;
  readonly maxConnections: number;
  readonly extraArgs?: readonly string[];
  readonly nodeArgs?: readonly string[];
  /** The floatd entry point to run (another build, to compare); this build's dist/src/main.js by default. */
  readonly main?: string;
  /** The NDJSON listener's port (0: any free one). */
  readonly port?: number;
  /** FLOATD_* settings for the server. */
  readonly env?: Readonly<Record<string, string>>;
  /** Start again on a data directory that already has its license key (a restart). */
  readonly restart?: boolean;
}

export interface BenchServer {
  readonly child: ChildProcess;
  /** The port of each scheme the server listens on (tcp, tls, http, https). */
  readonly ports: Readonly<Record<string, number>>;
  readonly port: number;
  /** When the server said it was listening (performance.now()). */
  readonly listeningAt: number;
}

/** A self-signed certificate for 127.0.0.1/localhost, made with openssl, for the TLS transports. */
export function benchCertificate(dir: string): { cert: string; key: string; ca: Buffer } {
  const cert = join(dir, 'bench.crt');
  const key = join(dir, 'bench.key');
  execFileSync('openssl', ['req', '-x509', '-new', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1'], { stdio: 'ignore' });
  return { cert, key, ca: readFileSync(cert) };
}

/**
 * Starts `floatd serve` on a fresh data dir, installs a license key for product
 * "bench" (as an operator would: `floatd license add` on the running server's
 * data directory), and resolves once the server grants from it.
 */
export async function startServer(dir: string, opts: ServerOptions): Promise<BenchServer> {
  const main = opts.main ?? join(packageRoot(), 'dist', 'src', 'main.js');
  const data = ['--data-dir', join(dir, 'data')];
  // The evaluation record beside the data directory, not the host's: a bench's key must not end this host's evaluation.
  const evaluation = { FLOATD_EVALUATION_STATE: join(dir, 'evaluation') };
  let token = '';
  if (opts.restart !== true) {
    const vendor = await newEd25519KeyPair();
    writeFileSync(join(dir, 'vendor-public.jwk'), JSON.stringify(vendor.publicJwk));
    token = await issueLicenseKey(vendor.privateJwk, { licensee: 'bench', product: 'bench', seats: opts.seats, now: Date.now() });
  }
  const child = spawn(process.execPath, [...(opts.nodeArgs ?? []), main, 'serve', ...data, '--vendor-public-key', join(dir, 'vendor-public.jwk'), '--listen', `127.0.0.1:${opts.port ?? 0}`, '--http-listen', '127.0.0.1:0', ...(opts.extraArgs ?? [])], {
    // The per-address limits are off: the bench's thousands of clients come from a few loopback addresses on purpose.
    env: {
      ...process.env,
      FLOATD_MAX_CONNECTIONS: String(opts.maxConnections),
      FLOATD_MAX_CONNECTIONS_PER_ADDRESS: '0',
      FLOATD_ACQUIRE_RATE_LIMIT_PER_SECOND: '0',
      FLOATD_LOG_FORMAT: 'json',
      FLOATD_LOG_LEVEL: 'info',
      ...evaluation,
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let listeningAt = 0;
  const ports = await new Promise<Record<string, number>>((resolve, reject) => {
    let out = '';
    const onData = (d: Buffer) => {
      out += d.toString();
      const found: Record<string, number> = {};
      for (const m of out.matchAll(/"scheme":"(\w+)","address":"[^"]*","port":(\d+),"msg":"listening"/g)) found[m[1]!] ??= Number(m[2]);
      if (found['tcp'] !== undefined && listeningAt === 0) listeningAt = performance.now();
      if (found['http'] !== undefined) {
        child.stdout!.off('data', onData);
        child.stdout!.resume();
        child.off('exit', onExit);
        resolve(found);
      }
    };
    const onExit = (code: number | null) => reject(new Error(`floatd exited ${code}: ${out}`));
    child.stdout!.on('data', onData);
    child.on('exit', onExit);
  });
  if (opts.restart !== true) {
    await new Promise<void>((resolve, reject) => {
      const add = spawn(process.execPath, [main, 'license', 'add', token, ...data], { stdio: 'ignore', env: { ...process.env, ...evaluation } });
      add.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`license add exited ${code}`))));
    });
  }
  const probe = await Client.open(ports['tcp']!);
  await probe.request({ op: 'hello', v: 1, client: { user: 'probe', instance: 'probe' } });
  for (let i = 0; i < 100 && (await probe.request({ op: 'status' }))['mode'] !== 'licensed'; i++) await new Promise((r) => setTimeout(r, 100));
  probe.socket.destroy();
  return { child, ports, port: ports['tcp']!, listeningAt };
}

/** Stops a server (SIGTERM, or SIGKILL as a crash) and waits for it to exit. */
export async function stopServer(server: BenchServer, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (server.child.exitCode !== null || server.child.signalCode !== null) return;
  const exited = new Promise((r) => server.child.once('exit', r));
  server.child.kill(signal);
  await exited;
}

/** CPU seconds (user + system) a process has used so far, from /proc. */
export function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // utime and stime are fields 14 and 15 of stat(5), in clock ticks (100 per second on Linux).
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** This process's file-descriptor limits, from /proc. */
export function fdLimits(): { soft: number; hard: number } {
  const line = /Max open files\s+(\S+)\s+(\S+)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  const num = (v: string | undefined) => (v === undefined || v === 'unlimited' ? Infinity : Number(v));
  return { soft: num(line?.[1]), hard: num(line?.[2]) };
}

/**
 * Client source addresses: 127.0.0.2, 127.0.0.3, … (all of 127/8 is loopback on
 * Linux). Each has its own ~28,000 ephemeral ports towards one server port.
 */
export let sourceAddresses = 8;
export function setSourceAddresses(n: number): void {
  sourceAddresses = Math.max(1, Math.min(250, n));
}
export function sourceAddress(i: number): string {
  return `127.0.0.${2 + (i % sourceAddresses)}`;
}

export async function connectAll(port: number, n: number, prefix: string, userOf = (i: number) => `${prefix}${i}`, ca?: Buffer): Promise<Client[]> {
  const clients: Client[] = [];
  for (let i = 0; i < n; i += 200) {
    const batch = await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, j) => Client.open(port, ca, sourceAddress(i + j))));
    await Promise.all(batch.map((c, j) => c.request({ op: 'hello', v: 1, client: { user: userOf(i + j), host: 'bench', instance: `${prefix}${i + j}` }, product: 'bench' })));
    clients.push(...batch);
  }
  return clients;
}

export async function closedLoop<C>(clients: readonly C[], seconds: number, step: (c: C) => Promise<void>): Promise<{ count: number; latencies: number[]; elapsed: number }> {
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

/** One grant: acquire a seat, then give it back. */
export async function acquireRelease(c: Client): Promise<void> {
  const r = await c.request({ op: 'acquire' });
  const lease = r['lease'] as { id: string } | undefined;
  if (!lease) throw new Error(`acquire failed: ${JSON.stringify(r)}`);
  await c.request({ op: 'release', lease: lease.id });
}

/**
 * One product instance over HTTPS keep-alive: its own connection (an agent
 * with one socket), JSON bodies, the lease id it holds.
 */
export class HttpsClient {
  private readonly agent: Agent;
  leaseId = '';

  constructor(
    private readonly port: number,
    ca: Buffer,
    private readonly user: string,
  ) {
    this.agent = new Agent({ keepAlive: true, maxSockets: 1, ca, servername: 'localhost' });
  }

  post(path: string, body: Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
    const payload = JSON.stringify({ client: { user: this.user, host: 'bench', instance: this.user }, ...body });
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        { host: '127.0.0.1', port: this.port, path, method: 'POST', agent: this.agent, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
        },
      );
      req.on('error', reject);
      req.end(payload);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}
