import { CONFIG_FLAGS, configFrom, intFlag, parse, type Io } from './common.js';

export const SERVE_USAGE = `floatd serve [--config FILE] [--data-dir DIR] [--listen [tls://]HOST:PORT]... [--vendor-public-key FILE]...
             [--http-listen HOST:PORT]... [--https-listen HOST:PORT]... [--tls-cert FILE --tls-key FILE] [--tls-client-ca FILE]
             [--lease-seconds N] [--rules FILE] [--groups FILE] [--log-level LEVEL] [--new-server-key]
  --new-server-key makes a server key where the data directory has a database but lost its key
  (clients that pinned the old key's fingerprint must be given the new one).
  SIGHUP re-reads the rules and groups, and the TLS certificate and key (what has errors is refused; what was in force stays).`;

/** Runs the server until SIGINT/SIGTERM; resolves with the exit code. */
export async function serve(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    ...CONFIG_FLAGS,
    'vendor-public-key': { type: 'string', multiple: true },
    listen: { type: 'string', multiple: true },
    'http-listen': { type: 'string', multiple: true },
    'https-listen': { type: 'string', multiple: true },
    'tls-cert': { type: 'string' },
    'tls-key': { type: 'string' },
    'tls-client-ca': { type: 'string' },
    'lease-seconds': { type: 'string' },
    'log-level': { type: 'string' },
    rules: { type: 'string' },
    groups: { type: 'string' },
    'new-server-key': { type: 'boolean' },
  });
  const extra = {
    vendorPublicKeys: values['vendor-public-key'],
    listeners: values.listen,
    'http.listen': values['http-listen'],
    'https.listen': values['https-listen'],
    'tls.certFile': values['tls-cert'],
    'tls.keyFile': values['tls-key'],
    'tls.clientCaFile': values['tls-client-ca'],
    leaseSeconds: intFlag(values['lease-seconds'], 'lease-seconds'),
    'log.level': values['log-level'],
    'rules.file': values.rules,
    'rules.groupsFile': values.groups,
  };
  // The signal handlers come first: a SIGTERM or SIGINT while the server starts (its port may
  // accept connections already) is kept, and the server stops cleanly once it has started.
  let signalled: NodeJS.Signals | null = null;
  let wake: (signal: NodeJS.Signals) => void = () => {};
  const onSignal = (signal: NodeJS.Signals) => {
    if (signalled !== null) return;
    signalled = signal;
    wake(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let reload: (() => void) | null = null;
  try {
    const config = configFrom(io, values, extra);
    // A reload reads the config file again, so edited inline rules (or a new rules path) apply too.
    // The server (fastify, metrics, the store) is loaded only by the command that runs it: other commands start faster.
    const { Floatd } = await import('../app/floatd.js');
    const server = await Floatd.create(config, { rulesSettings: () => configFrom(io, values, extra).rules, newServerKey: values['new-server-key'] ?? false, forceExit: io.exit });
    if (signalled === null) await server.start();
    // SIGHUP re-reads the rules and groups, and the TLS certificate and key.
    reload = () => {
      const reloading = async () => {
        await server.reloadRules();
        server.reloadTls();
      };
      reloading().catch((err: unknown) => server.logger.error({ err }, 'reload failed'));
    };
    process.on('SIGHUP', reload);
    const signal = signalled ?? (await new Promise<NodeJS.Signals>((resolve) => (wake = resolve)));
    server.logger.info({ signal }, 'shutting down');
    try {
      await server.stop();
      return 0;
    } catch (err) {
      server.logger.error({ err }, 'shutdown failed');
      return 1;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (reload !== null) process.off('SIGHUP', reload);
  }
}
