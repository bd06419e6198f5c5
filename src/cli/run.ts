import { spawn } from 'node:child_process';
import { accessSync, constants as fs, statSync } from 'node:fs';
import { constants } from 'node:os';
import { delimiter, join } from 'node:path';
import type { JWK } from 'jose';
import { readJwkFile } from '../adapters/crypto/keys.js';
import { LeaseClient, LeaseClientError } from '../client/lease-client.js';
import { FloatdError } from '../domain/errors.js';
import { intFlag, parse, type Io } from './common.js';

export const RUN_USAGE = `floatd run --server ADDRESS[,ADDRESS]... [--product P] [--retry-seconds N] [--user U] [--instance ID | --instance-file FILE]
           [--on-lost warn|stop] [--grace-seconds N] [--server-key-fingerprint FP] [--vendor-public-key FILE]... [--ca FILE] [--cert FILE --key FILE] -- COMMAND [ARG]...
  Waits for a lease, runs COMMAND while keeping the lease renewed, releases it when COMMAND exits, and exits with its status.
  Exits 75 without running COMMAND when no lease can be had (refused, or the server unreachable, with retrying off or for good).
  ADDRESS: HOST[:PORT] (TCP, port 8989), tls://HOST[:PORT] (TCP inside TLS, 8991), https://HOST[:PORT] (8443) or http://HOST[:PORT] (8990).
  Several servers (the nodes of a cluster): a comma-separated list, or --server again; a HOST with several addresses is several servers.
  The lease is kept through one and renewed on the next when that one fails.
  --ca FILE: the CA certificate(s) to trust for tls:// and https:// (default: Node.js's built-in CAs);
  --cert FILE --key FILE: a client certificate and its key to show the server;
  --vendor-public-key FILE: accept only leases that chain to this vendor (license key, activation naming the server's key, lease token).`;

/** Exit status when no lease could be had and the command was not run: EX_TEMPFAIL from sysexits.h. */
export const NO_LEASE_STATUS = 75;

const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];

function signalStatus(signal: NodeJS.Signals): number {
  return 128 + (constants.signals[signal] ?? 0);
}

/** A duration as people read it: "0.5 s", "30 s", "15 min", "2.5 h" (server durations arrive a few ms short). */
export function formatDuration(ms: number): string {
  const s = ms / 1000;
  if (s < 10) return `${Math.round(s * 10) / 10} s`;
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${Math.round(s / 360) / 10} h`;
}

const RUN_FLAGS = {
  server: { type: 'string', multiple: true },
  product: { type: 'string' },
  'retry-seconds': { type: 'string' },
  user: { type: 'string' },
  instance: { type: 'string' },
  'instance-file': { type: 'string' },
  'on-lost': { type: 'string' },
  'grace-seconds': { type: 'string' },
  'server-key-fingerprint': { type: 'string' },
  'vendor-public-key': { type: 'string', multiple: true },
  ca: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
} as const;

type RunValues = ReturnType<typeof parse<typeof RUN_FLAGS>>['values'];

/** floatd run's settings, checked: the command, how to reach the server, what to do when the lease is lost. */
interface RunOptions {
  readonly command: readonly [string, ...string[]];
  /** The servers, as given (each may be a comma-separated list). */
  readonly servers: readonly string[];
  readonly values: RunValues;
  readonly onLost: 'warn' | 'stop';
  readonly graceMs: number;
  readonly retrySeconds: number | undefined;
  readonly vendorKeys: JWK[];
}

/** `floatd run`: wraps any program in a lease. Resolves with the exit status to use. */
export async function run(args: string[], io: Io): Promise<number> {
  const options = runOptions(args);
  const say = (text: string) => io.err(`floatd run: ${text}`);
  const name = options.command[0];
  // A command that cannot be started is found out before a seat is taken for it.
  const runnable = findCommand(name, io.env['PATH'] ?? '');
  if (runnable !== true) {
    say(`cannot run ${name}: ${runnable.why}; no lease was taken`);
    return runnable.status;
  }
  const client = leaseClient(options);
  // Another key at the server's address: never a quiet "lease regained".
  const server = { keyChangedTo: null as string | null, using: null as string | null };
  const where = options.servers.join(',');
  client.on('serverKeyChanged', ({ from, to, refused }) => {
    server.keyChangedTo = to;
    say(
      `WARNING: the server key fingerprint changed from ${from} to ${to}: another server answers at ${where}, or the server lost its key; ` +
        (refused ? 'its leases are refused (SERVER_KEY_CHANGED) because --vendor-public-key is given' : 'its leases are taken as they come (give --vendor-public-key or --server-key-fingerprint to refuse them)'),
    );
  });
  // A move to another server of the list is said; reconnecting to the same one is not.
  client.on('connected', ({ server: to }) => {
    if (server.using !== null && server.using !== to) say(`now using server ${to} (was ${server.using})`);
    server.using = to;
  });
  // Only the waits are said here; a refusal that ends the wait is said once, below.
  client.on('denied', (d) => {
    if (d.retryInMs !== null) say(`waiting for a lease: ${d.code}${d.reason ? ` (${d.reason})` : ''}: ${d.message}; trying again in ${formatDuration(d.retryInMs)}`);
  });
  const refused = await firstLease(client, name, say);
  if (refused !== null) return refused;
  return supervise(client, options, say, () => server.keyChangedTo);
}

function runOptions(args: string[]): RunOptions {
  const sep = args.indexOf('--');
  if (sep < 0 || sep === args.length - 1) throw new FloatdError('USAGE', `floatd run needs the command after "--"\n${RUN_USAGE}`);
  const command = args.slice(sep + 1) as [string, ...string[]];
  const { values } = parse(args.slice(0, sep), RUN_FLAGS);
  const servers = values.server ?? [];
  if (servers.length === 0) throw new FloatdError('USAGE', `floatd run needs --server ADDRESS\n${RUN_USAGE}`);
  if ((values.cert === undefined) !== (values.key === undefined)) throw new FloatdError('USAGE', '--cert and --key go together: a client certificate needs its key');
  const plain = servers.flatMap((s) => s.split(',')).find((s) => s.trim() !== '' && !/^(tls|https):\/\//i.test(s.trim()));
  if ((values.ca ?? values.cert) !== undefined && plain !== undefined) {
    throw new FloatdError('USAGE', `--ca, --cert and --key are for tls:// and https:// servers; "${plain.trim()}" is not one`);
  }
  const onLost = values['on-lost'] ?? 'warn';
  if (onLost !== 'warn' && onLost !== 'stop') throw new FloatdError('USAGE', `--on-lost must be warn or stop; got "${onLost}"`);
  const graceMs = (intFlag(values['grace-seconds'], 'grace-seconds') ?? 60) * 1000;
  const retrySeconds = intFlag(values['retry-seconds'], 'retry-seconds');
  const vendorKeys: JWK[] = (values['vendor-public-key'] ?? []).map((file) => {
    try {
      return readJwkFile(file, 'public');
    } catch (err) {
      throw new FloatdError('INPUT_INVALID', `--vendor-public-key: ${(err as Error).message}`);
    }
  });
  return { command, servers, values, onLost, graceMs, retrySeconds, vendorKeys };
}

/** The lease client for the flags; a file it cannot read or use is the caller's mistake. */
function leaseClient({ servers, values, vendorKeys, retrySeconds }: RunOptions): LeaseClient {
  try {
    return new LeaseClient({
      server: servers,
      ...(values.product !== undefined ? { product: values.product } : {}),
      ...(values.user !== undefined ? { user: values.user } : {}),
      ...(values.instance !== undefined ? { instance: values.instance } : {}),
      ...(values['instance-file'] !== undefined ? { instanceFile: values['instance-file'] } : {}),
      ...(values['server-key-fingerprint'] !== undefined ? { serverKeyFingerprint: values['server-key-fingerprint'] } : {}),
      ...(vendorKeys.length > 0 ? { vendorPublicKey: vendorKeys } : {}),
      ...(values.ca !== undefined ? { caFile: values.ca } : {}),
      ...(values.cert !== undefined ? { certFile: values.cert } : {}),
      ...(values.key !== undefined ? { keyFile: values.key } : {}),
      ...(retrySeconds !== undefined ? { retryIntervalMs: retrySeconds * 1000 } : {}),
    });
  } catch (err) {
    // A CA or certificate file that cannot be read or used (the message names it).
    if (err instanceof LeaseClientError && err.code === 'INPUT_INVALID') throw new FloatdError('INPUT_INVALID', err.message);
    if (err instanceof LeaseClientError) throw new FloatdError('USAGE', err.message);
    // The instance file could not be read or made (the message names it).
    if ((err as NodeJS.ErrnoException).path !== undefined) throw new FloatdError('INPUT_INVALID', `--instance-file: ${(err as Error).message}`);
    throw err;
  }
}

/** Waits for the first lease: null once held, else the exit status (a signal stopped the wait, or no lease can be had). */
async function firstLease(client: LeaseClient, name: string, say: (text: string) => void): Promise<number | null> {
  // A signal while waiting for a seat stops the wait.
  let stoppedBy: NodeJS.Signals | null = null;
  const stopWaiting = (signal: NodeJS.Signals) => {
    stoppedBy = signal;
    void client.close();
  };
  for (const s of FORWARDED) process.on(s, stopWaiting);
  try {
    const lease = await client.acquire();
    say(`lease ${lease.id} on ${lease.product} held (renewing every ${formatDuration(lease.renewAfterMs)}); starting ${name}`);
    return null;
  } catch (err) {
    await client.close();
    if (stoppedBy !== null) return signalStatus(stoppedBy);
    if (err instanceof LeaseClientError) {
      say(`no lease, so ${name} was not started: ${err.code}${err.reason ? ` (${err.reason})` : ''}: ${err.message}`);
      return NO_LEASE_STATUS;
    }
    throw err;
  } finally {
    for (const s of FORWARDED) process.off(s, stopWaiting);
  }
}

/** Runs the command while the lease is kept, forwarding signals; releases the lease when it exits and resolves with its status. */
async function supervise(client: LeaseClient, { command, onLost, graceMs }: RunOptions, say: (text: string) => void, keyChangedTo: () => string | null): Promise<number> {
  const name = command[0];
  const child = spawn(name, command.slice(1), { stdio: 'inherit' });
  const forward = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const s of FORWARDED) process.on(s, forward);

  let grace: NodeJS.Timeout | null = null;
  const lostLease = (what: string, reason: string) => {
    if (onLost === 'warn') {
      say(`${what} the lease (${reason}); ${name} keeps running while a new one is sought`);
      return;
    }
    say(`${what} the lease (${reason}); stopping ${name} in ${formatDuration(graceMs)} unless a lease is regained`);
    grace ??= setTimeout(() => {
      say(`no lease regained; sending SIGTERM to ${name}`);
      forward('SIGTERM');
      setTimeout(() => forward('SIGKILL'), 10_000).unref();
    }, graceMs);
  };
  client.on('lost', (e) => lostLease('lost', e.reason));
  client.on('revoked', (e) => lostLease('the server revoked', e.reason));
  client.on('regained', (lease) => {
    if (grace !== null) clearTimeout(grace);
    grace = null;
    const changed = keyChangedTo();
    if (changed !== null) say(`lease ${lease.id} taken from a server with another key (${changed}), not the one that granted the first lease`);
    else say(`lease regained (${lease.id})`);
  });

  const status = await new Promise<number>((resolve) => {
    child.once('error', (err) => {
      say(`cannot run ${name}: ${err.message}`);
      resolve((err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
    });
    child.once('exit', (code, signal) => resolve(code ?? (signal ? signalStatus(signal) : 1)));
  });
  for (const s of FORWARDED) process.off(s, forward);
  if (grace !== null) clearTimeout(grace);
  const held = client.lease;
  await client.close();
  say(`${name} exited with status ${status}; ${held !== null ? `lease ${held.id} released` : 'no lease was held'}`);
  return status;
}

/** Whether `name` can be run (a path, or a name found on PATH): true, or why not with the shell's status (127 not found, 126 not executable). */
function findCommand(name: string, path: string): true | { why: string; status: number } {
  const executable = (file: string): boolean | null => {
    try {
      if (!statSync(file).isFile()) return false;
      accessSync(file, fs.X_OK);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? null : false;
    }
  };
  if (name.includes('/')) {
    const ok = executable(name);
    return ok === true ? true : ok === null ? { why: 'no such file', status: 127 } : { why: 'not an executable file', status: 126 };
  }
  for (const dir of path.split(delimiter)) {
    if (dir !== '' && executable(join(dir, name)) === true) return true;
  }
  return { why: 'not found on PATH', status: 127 };
}
