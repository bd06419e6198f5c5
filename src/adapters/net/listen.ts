import type { Server } from 'node:net';
import { FloatdError } from '../../domain/errors.js';

export interface ListenOn {
  readonly name: string;
  /** '' listens on every interface, dual stack where IPv6 exists. */
  readonly host: string;
  readonly port: number;
}

const LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: 'the address is already in use (is another floatd, or another program, listening there?)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'this machine has no such address',
  ENOTFOUND: 'no such host name',
  EAI_AGAIN: 'the host name cannot be resolved now',
};

export function displayAddress(host: string, port: number): string {
  return `${host === '' ? '[::]' : host.includes(':') ? `[${host}]` : host}:${port}`;
}

function listenFailed(err: NodeJS.ErrnoException, l: ListenOn): FloatdError {
  const why = (err.code !== undefined ? LISTEN_ERRORS[err.code] : undefined) ?? err.message;
  return new FloatdError('LISTEN_FAILED', `cannot listen on ${displayAddress(l.host, l.port)} (listener "${l.name}"): ${why}`, { listener: l.name, cause: err.code });
}

/** Listens on one address (every interface for ''), turning failures into LISTEN_FAILED naming the listener. */
export async function listenOn(server: Server, l: ListenOn, backlog: number): Promise<void> {
  const attempt = (host: string, ipv6Only?: boolean) =>
    new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      server.once('error', onError);
      server.listen({ host, port: l.port, backlog, ipv6Only }, () => {
        server.off('error', onError);
        resolve();
      });
    });
  try {
    if (l.host !== '') return await attempt(l.host);
    // Every interface: IPv6 dual stack, or IPv4 alone on hosts without IPv6.
    return await attempt('::', false).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EAFNOSUPPORT' || err.code === 'EADDRNOTAVAIL') return attempt('0.0.0.0');
      throw err;
    });
  } catch (err) {
    throw listenFailed(err as NodeJS.ErrnoException, l);
  }
}

/** Closes a listening server, resolving once it is closed (or was never listening). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
