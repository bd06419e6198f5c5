import pino, { type Logger } from 'pino';
import { FloatdError } from '../../domain/errors.js';
import { createPrivateFile, ensureParent } from '../fs/private-files.js';

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
  if (toFile) {
    // The log names users and hosts: a log file floatd makes is private (0600) whatever the umask;
    // one that exists keeps the mode its owner gave it (logrotate's `create 0640`, say).
    try {
      ensureParent(options.destination);
      createPrivateFile(options.destination);
    } catch (err) {
      throw new FloatdError('CONFIG_INVALID', `setting log.destination: cannot create the log file ${options.destination}: ${(err as Error).message}`, { setting: 'log.destination' });
    }
  }
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
