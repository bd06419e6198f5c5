import type { Config } from '../config/config.js';
import type { BoundListener } from '../adapters/tcp/tcp-server.js';
import { AppContext, type AppDeps } from './context.js';
import { LeaseServer, type LeaseServerOptions } from './lease-server.js';
import type { RulesReload } from './rules-in-force.js';
import type { ListenerStatus, ServerStatus } from './status.js';
import { reloadTls } from './tls-certificate.js';

export type FloatdDeps = AppDeps & LeaseServerOptions;
export type { RulesReload };
export { RUNTIME_META, type ServerRuntime } from './runtime-record.js';

/**
 * A floatd server as `serve` (and a test) holds it: the services the
 * AppContext built, the LeaseServer that starts and stops them, and the
 * operations an operator reaches by signal or command.
 */
export class Floatd {
  private readonly server: LeaseServer;

  private constructor(
    readonly context: AppContext,
    options: LeaseServerOptions,
  ) {
    this.server = new LeaseServer(context, options);
  }

  static async create(config: Config, deps: FloatdDeps = {}): Promise<Floatd> {
    return new Floatd(await AppContext.create(config, deps), deps);
  }

  get config() {
    return this.context.config;
  }
  get clock() {
    return this.context.clock;
  }
  get logger() {
    return this.context.logger;
  }
  get store() {
    return this.context.store;
  }
  get pools() {
    return this.context.pools;
  }
  get leases() {
    return this.context.leases;
  }
  get api() {
    return this.context.api;
  }
  get metrics() {
    return this.context.metrics;
  }
  get storage() {
    return this.context.storage;
  }
  get retention() {
    return this.context.retention;
  }
  get activation() {
    return this.context.activation;
  }

  start(): Promise<BoundListener[]> {
    return this.server.start();
  }

  stop(): Promise<void> {
    return this.server.stop();
  }

  /** The NDJSON listeners as bound. */
  listeners(): readonly BoundListener[] {
    return this.context.doors.ndjson();
  }

  /** Every listening socket: the NDJSON ones first, then the web endpoint's. */
  listenerStatus(): ListenerStatus[] {
    return this.context.doors.listenerStatus();
  }

  /** Listeners suspended now (status shows them; /readyz answers 503 while any is). */
  suspendedListeners(): string[] {
    return this.context.doors.suspended();
  }

  /** The web endpoint's routes. */
  webRoutes(): ReadonlyArray<{ method: string; url: string }> {
    return this.context.doors.webRoutes();
  }

  /** What `status` shows. */
  status(): Promise<ServerStatus> {
    return this.context.statusView.current();
  }

  readiness(): { ready: boolean; reason: string } {
    return this.context.readiness();
  }

  /** Re-reads the installed keys (after `floatd license add/remove`) and revokes leases of removed ones. */
  reloadLicenses(initial = false): Promise<void> {
    return this.context.licenses.reload(initial);
  }

  /** Re-validates due activations with the vendor and checks every activation against the host. */
  checkActivations(): Promise<void> {
    return this.context.activations.check();
  }

  /** Re-reads the rules and groups (SIGHUP, `floatd rules reload`). */
  reloadRules(): Promise<RulesReload> {
    return this.context.rules.reload();
  }

  /** Re-reads the TLS certificate and key (SIGHUP, or when the files change). */
  reloadTls(): { ok: boolean; message: string } {
    return reloadTls(this.context);
  }
}
