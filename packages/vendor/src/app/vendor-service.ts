import type { JWK } from 'jose';
import type { Clock } from '../../../../src/domain/clock.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { SystemClock } from '../../../../src/adapters/clock/system-clock.js';
import { VendorServer } from '../../../../src/adapters/http/vendor-server.js';
import type { Logger } from '../../../../src/adapters/log/logger.js';
import { VendorStore } from '../store/vendor-store.js';
import { TlsContext } from '../../../../src/adapters/tls/tls-context.js';
import { VendorActivations } from './vendor-activations.js';
import { VendorEvaluations } from './vendor-evaluations.js';

export interface VendorServiceOptions {
  readonly dataDir: string;
  readonly privateJwk: JWK;
  readonly host: string;
  readonly port: number;
  readonly tls: { readonly certFile: string; readonly keyFile: string } | null;
  readonly ratePerMinute?: number;
  readonly clock?: Clock;
  readonly logger: Logger;
}

export interface RunningVendorService {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly activations: VendorActivations;
  stop(): Promise<void>;
}

/** Starts the vendor's activation service: its database, its HTTP(S) listener, its log. */
export async function startVendorService(o: VendorServiceOptions): Promise<RunningVendorService> {
  const clock = o.clock ?? new SystemClock();
  const store = VendorStore.open(o.dataDir);
  const activations = new VendorActivations(store, clock, o.privateJwk);
  const evaluations = new VendorEvaluations(store, clock, o.privateJwk);
  const tls = o.tls === null ? null : new TlsContext({ certFile: o.tls.certFile, keyFile: o.tls.keyFile, clientCaFile: null, clientCertificates: 'off', profile: 'intermediate' });
  const log = o.logger;
  const server = new VendorServer(
    { host: o.host, port: o.port, tls, ratePerMinute: o.ratePerMinute ?? 60 },
    {
      api: {
        activate: async (request, remote) => {
          const g = await activations.activate(request, 'online', remote);
          log.info({ key: g.keyId, activation: g.activationId, remote, created: g.created }, g.created ? `license key ${g.keyId} activated on a new server (activation ${g.activationId})` : `license key ${g.keyId} activated again on the same host (activation ${g.activationId}, no new slot)`);
          return g;
        },
        revalidate: async (request, remote) => {
          const g = await activations.revalidate(request);
          log.info({ key: g.keyId, activation: g.activationId, remote }, `activation ${g.activationId} of license key ${g.keyId} re-validated`);
          return g;
        },
        release: async (proof, remote) => {
          const r = await activations.release(proof, 'online');
          log.info({ key: r.keyId, activation: r.activationId, remote }, `activation ${r.activationId} of license key ${r.keyId} released`);
          return r;
        },
        registerEvaluation: async (request, remote) => {
          const g = await evaluations.register(request, 'online', remote);
          const period = `${new Date(g.startedAt).toISOString()} to ${new Date(g.endsAt).toISOString()}`;
          log.info({ evaluation: g.evaluationId, products: g.products, remote, created: g.created }, g.created ? `evaluation ${g.evaluationId} of ${g.products.join(', ')} registered for a new host: ${period}` : `evaluation ${g.evaluationId} of ${g.products.join(', ')} registered again by the same host: the same period, ${period}`);
          return g;
        },
      },
      monotonic: () => clock.monotonic(),
      now: () => clock.now(),
      requestFailed: (err, context) => log.error({ err, ...context }, 'activation request failed'),
      answered: (route, status, remote, code) => {
        if (status >= 400) log.warn({ route, status, remote, code }, `${route} from ${remote} refused: ${code ?? status}`);
      },
    },
  );
  let bound;
  try {
    bound = await server.start();
  } catch (err) {
    store.close();
    if (err instanceof FloatdError) throw err;
    throw new FloatdError('LISTEN_FAILED', (err as Error).message);
  }
  let stopping: Promise<void> | null = null;
  const shown = bound.host.includes(':') ? `[${bound.host}]` : bound.host;
  log.info({ address: bound.host, port: bound.port, tls: tls !== null, dataDir: o.dataDir }, 'activation service listening');
  return {
    host: bound.host,
    port: bound.port,
    url: `${tls ? 'https' : 'http'}://${shown}:${bound.port}`,
    activations,
    stop() {
      stopping ??= server.stop().finally(() => store.close());
      return stopping;
    },
  };
}
