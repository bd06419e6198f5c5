import { HttpTransport } from './http-transport.js';
import { LeaseClientError } from './lease-client-types.js';
import type { ServerAddress } from './server-address.js';
import { pinnedLookup, resolveEndpoints, type Endpoint, type ResolveHost } from './server-list.js';
import { TcpTransport } from './tcp-transport.js';
import type { TlsMaterial } from './tls-material.js';
import { TransportError, type Reply, type Transport } from './transport.js';

/**
 * Answers that say this server cannot serve us now, though another node of the
 * cluster may: it cannot write the shared database (UNAVAILABLE), its listener is
 * suspended for maintenance (SUSPENDED), or it is stopping (SHUTTING_DOWN).
 */
export const TRY_ANOTHER_SERVER: ReadonlySet<string> = new Set(['UNAVAILABLE', 'SUSPENDED', 'SHUTTING_DOWN']);

/** Refusals of hello that no other attempt fixes. */
const PERMANENT_HELLO = new Set(['BAD_REQUEST', 'UNKNOWN_PRODUCT', 'PRODUCT_REQUIRED', 'UNSUPPORTED_VERSION', 'TOKEN_INVALID', 'IDENTITY_MISMATCH']);

export interface ServerConnectionOptions {
  readonly servers: readonly ServerAddress[];
  readonly tls: TlsMaterial;
  readonly timeoutMs: number;
  readonly resolveHost?: ResolveHost;
  /** The fields of hello. */
  readonly hello: () => Record<string, unknown>;
  /** Checks a server's hello reply (its key); throws to refuse the server. */
  readonly trust: (hello: Extract<Reply, { ok: true }>) => Promise<void>;
  /** What a server pushes (revoked, expired). */
  readonly onEvent: (message: Record<string, unknown>) => void;
  readonly onConnected: (server: string) => void;
  /** The connection in use ended without the client asking (it dropped, or an HTTP request got no answer). */
  readonly onDropped: (message: string, server: string) => void;
}

/**
 * The client's one connection to a server of its list. It connects to the server
 * it used last, or, when that one fails, to the next, each name resolved afresh
 * at every try (a name with several addresses is several servers); a server the
 * client leaves (it dropped the connection, timed out, or answered that it cannot
 * serve now) sends the next try to the server after it.
 */
export class ServerConnection {
  private transport: Transport | null = null;
  private endpoint: Endpoint | null = null;
  private connecting: Promise<Transport> | null = null;
  /** The endpoints of the last resolution, and the index of the one to try first. */
  private endpoints: Endpoint[] = [];
  private cursor = 0;

  constructor(private readonly options: ServerConnectionOptions) {}

  /** The open connection, or null. */
  get open(): Transport | null {
    return this.transport !== null && !this.transport.closed ? this.transport : null;
  }

  /** How many servers the list came to at the last resolution (the list's length before any). */
  get serverCount(): number {
    return Math.max(this.endpoints.length, this.options.servers.length);
  }

  /** The open connection, or a new one to the first server of the list (from the cursor) that answers and is trusted. */
  connection(): Promise<Transport> {
    const open = this.open;
    if (open !== null) return Promise.resolve(open);
    this.connecting ??= this.connectToSome().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /**
   * Sends `op` to a server, going on to the next server of the list while the one
   * in use cannot be reached or answers TRY_ANOTHER_SERVER; each server is asked
   * at most once, and the last one is left too, so the next round starts after it.
   * The last answer (or error) is the result. A lone server is left only when it
   * cannot be reached: an answer keeps its connection, as the next try would go back to it.
   */
  async request(op: string, fields: Record<string, unknown>): Promise<Reply> {
    for (let tries = 1; ; tries++) {
      const transport = await this.connection();
      let reply: Reply;
      try {
        reply = await transport.request(op, fields);
      } catch (err) {
        if (!(err instanceof TransportError)) throw err;
        this.leave(transport, err.message);
        if (tries >= this.serverCount) throw err;
        continue;
      }
      if (reply.ok || !TRY_ANOTHER_SERVER.has(reply.error.code) || this.serverCount < 2) return reply;
      this.leave(transport, `${reply.error.code}: ${reply.error.message}`);
      if (tries >= this.serverCount) return reply;
    }
  }

  /**
   * Stops using `transport` (a server that failed the client): the next connection goes to
   * the server after it, and the client hears of it as a dropped connection.
   */
  leave(transport: Transport, why: string): void {
    if (this.transport !== transport) return;
    const server = this.endpoint?.label ?? '';
    this.transport = null;
    this.endpoint = null;
    this.cursor++;
    transport.close();
    this.options.onDropped(`left ${server}: ${why}`, server);
  }

  close(): void {
    this.transport?.close();
    this.transport = null;
    this.endpoint = null;
  }

  private async connectToSome(): Promise<Transport> {
    this.endpoints = await resolveEndpoints(this.options.servers, this.options.resolveHost);
    const n = this.endpoints.length;
    const start = this.cursor % n;
    const failures: Error[] = [];
    for (let k = 0; k < n; k++) {
      const i = (start + k) % n;
      try {
        const transport = await this.connectTo(this.endpoints[i]!);
        this.cursor = i;
        return transport;
      } catch (err) {
        if (!(err instanceof TransportError) && !(err instanceof LeaseClientError)) throw err;
        failures.push(err);
      }
    }
    this.cursor = start + 1;
    if (failures.length === 1) throw failures[0]!;
    // Refused for good only when every server refused for good; otherwise one may yet come back.
    const permanent = failures.every((e) => e instanceof LeaseClientError && PERMANENT_HELLO.has(e.code));
    if (permanent) throw failures[0]!;
    throw new TransportError(`none of the ${n} servers could be used: ${failures.map((e) => e.message).join('; ')}`);
  }

  private async connectTo(endpoint: Endpoint): Promise<Transport> {
    const { timeoutMs, tls } = this.options;
    const onClose = (err: Error | null) => {
      if (this.transport !== transport) return;
      this.transport = null;
      this.endpoint = null;
      this.cursor++;
      this.options.onDropped(err?.message ?? 'connection closed', endpoint.label);
    };
    const lookup = pinnedLookup(endpoint);
    const common = { label: endpoint.label, tls, ...(lookup !== undefined ? { lookup } : {}) };
    const text = endpoint.address.text;
    // Over HTTP(S) "connected" means a request reached the server, and "dropped" that one did not.
    const transport: Transport =
      endpoint.address.scheme === 'http' || endpoint.address.scheme === 'https'
        ? new HttpTransport(text, { ...common, requestTimeoutMs: timeoutMs, onClose })
        : await TcpTransport.connect(text, { ...common, connectTimeoutMs: timeoutMs, requestTimeoutMs: timeoutMs, keepProcessAlive: false, onEvent: this.options.onEvent, onClose });
    let hello: Reply;
    try {
      hello = await transport.request('hello', this.options.hello());
    } catch (err) {
      transport.close();
      throw err;
    }
    if (!hello.ok) {
      transport.close();
      throw new LeaseClientError(hello.error.code, `${endpoint.label} refused hello: ${hello.error.message}`);
    }
    try {
      await this.options.trust(hello);
    } catch (err) {
      transport.close();
      throw err;
    }
    this.transport = transport;
    this.endpoint = endpoint;
    this.options.onConnected(endpoint.label);
    return transport;
  }
}
