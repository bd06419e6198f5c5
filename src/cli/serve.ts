import { Floatd } from '../app/floatd.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, type Io } from './common.js';

export const SERVE_USAGE = `floatd serve [--config FILE] [--data-dir DIR] [--listen HOST:PORT]... [--vendor-public-key FILE]...
             [--lease-seconds N] [--rules FILE] [--groups FILE] [--log-level LEVEL]
  SIGHUP re-reads the rules and groups (a file with errors is refused; the old rules stay).`;

/** Runs the server until SIGINT/SIGTERM; resolves with the exit code. */
export async function serve(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    ...CONFIG_FLAGS,
    'vendor-public-key': { type: 'string', multiple: true },
    listen: { type: 'string', multiple: true },
    'lease-seconds': { type: 'string' },
    'log-level': { type: 'string' },
    rules: { type: 'string' },
    groups: { type: 'string' },
  });
  const extra = {
    vendorPublicKeys: values['vendor-public-key'],
    listeners: values.listen,
    leaseSeconds: intFlag(values['lease-seconds'], 'lease-seconds'),
    'log.level': values['log-level'],
    'rules.file': values.rules,
    'rules.groupsFile': values.groups,
  };
  const config = configFrom(io, values, extra);
  // A reload reads the config file again, so edited inline rules (or a new rules path) apply too.
  const server = await Floatd.create(config, { rulesSettings: () => configFrom(io, values, extra).rules });
  await server.start();
  const reload = () => {
    try {
      server.reloadRules();
    } catch (err) {
      server.logger.error({ err }, 'rules reload failed');
    }
  };
  process.on('SIGHUP', reload);
  return new Promise<number>((resolve) => {
    let exitCode = 0;
    const shutdown = (signal: NodeJS.Signals) => {
      server.logger.info({ signal }, 'shutting down');
      process.off('SIGINT', shutdown);
      process.off('SIGTERM', shutdown);
      process.off('SIGHUP', reload);
      server.stop().then(
        () => resolve(exitCode),
        (err: unknown) => {
          server.logger.error({ err }, 'shutdown failed');
          exitCode = 1;
          resolve(exitCode);
        },
      );
    };
    process.on('SIGINT', shutdown);
    process.on('SIGTERM', shutdown);
  });
}
