import pino, { type Logger } from 'pino';

export type { Logger };

export interface LoggerOptions {
  readonly level: string;
  /** 'stdout', 'stderr', or a file path. */
  readonly destination: string;
  /** 'json', 'pretty', or 'auto' (pretty when the destination is a TTY). */
  readonly format: 'json' | 'pretty' | 'auto';
}

export function createLogger(options: LoggerOptions): Logger {
  const toFile = options.destination !== 'stdout' && options.destination !== 'stderr';
  const fd = options.destination === 'stderr' ? 2 : 1;
  const tty = !toFile && (fd === 1 ? process.stdout : process.stderr).isTTY === true;
  const pretty = options.format === 'pretty' || (options.format === 'auto' && tty);
  const base = { level: options.level, base: { service: 'floatd' }, timestamp: pino.stdTimeFunctions.isoTime };
  if (pretty) {
    return pino(
      base,
      pino.transport({
        target: 'pino-pretty',
        options: { destination: toFile ? options.destination : fd, colorize: !toFile, translateTime: 'SYS:standard', ignore: 'pid,hostname,service' },
      }),
    );
  }
  return pino(base, pino.destination({ dest: toFile ? options.destination : fd, mkdir: toFile, sync: false }));
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
