import { Floatd } from '../app/floatd.js';
import { CONFIG_FLAGS, configFrom, intFlag, parse, type Io } from './common.js';

export const SERVE_USAGE = `floatd serve [--config FILE] [--data-dir DIR] [--listen HOST:PORT]... [--vendor-public-key FILE]...
             [--lease-seconds N] [--log-level LEVEL]`;

/** Runs the server until SIGINT/SIGTERM; resolves with the exit code. */
export async function serve(args: string[], io: Io): Promise<number> {
  const { values } = parse(args, {
    ...CONFIG_FLAGS,
    listen: { type: 'string', multiple: true },
    'lease-seconds': { type: 'string' },
    'log-level': { type: 'string' },
  });
  const config = configFrom(io, values, {
    listeners: values.listen,
    leaseSeconds: intFlag(values['lease-seconds'], 'lease-seconds'),
    'log.level': values['log-level'],
  });
  const server = await Floatd.create(config);
  await server.start();
  return new Promise<number>((resolve) => {
    let exitCode = 0;
    const shutdown = (signal: NodeJS.Signals) => {
      server.logger.info({ signal }, 'shutting down');
      process.off('SIGINT', shutdown);
      process.off('SIGTERM', shutdown);
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
