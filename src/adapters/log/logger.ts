import { openSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import PinoPretty from 'pino-pretty';
import { FloatdError } from '../../domain/errors.js';
import { createPrivateFile, ensureParent } from '../fs/private-files.js';
import { LogDestination } from './log-destination.js';

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
  const fileFd = toFile ? openLogFile(options.destination) : null;
  let logger: Logger | null = null;
  const where = options.destination;
  const destination = new LogDestination(fileFd ?? fd, {
    onFailing: (code, message) => {
      // The log itself cannot say it: stderr (the service manager's journal) can, unless it is the log.
      if (fd !== 2 || toFile) process.stderr.write(`floatd: writing the log to ${where} fails (${message}); log lines are dropped and counted until it works again\n`);
    },
    onRecovered: ({ code, dropped, ms }) =>
      logger?.warn(
        { dropped, seconds: Math.round(ms / 100) / 10, code, destination: where },
        code === 'BUFFER_FULL'
          ? `${dropped} log line(s) dropped: ${where} did not take them as fast as they came`
          : `log writes to ${where} work again after ${Math.round(ms / 100) / 10} s of ${code}: ${dropped} log line(s) dropped meanwhile`,
      ),
  });
  if (pretty) {
    // Formatted here rather than in a worker thread, so it goes through the same destination that never blocks.
    const prettify = PinoPretty.prettyFactory({ colorize: !toFile, translateTime: 'SYS:standard', ignore: 'pid,hostname,service' });
    logger = pino(base, { write: (line: string) => void destination.write(prettify(line)), flush: (cb: (err?: Error) => void) => destination.flush(cb) } as pino.DestinationStream);
  } else {
    logger = pino(base, destination);
  }
  return logger;
}

/**
 * Opens the log file at start, so a path floatd cannot write is a setting
 * error, not a silent loss. The log names users and hosts: a log file floatd
 * makes is private (0600) whatever the umask; one that exists keeps the mode
 * its owner gave it (logrotate's `create 0640`, say).
 */
function openLogFile(file: string): number {
  try {
    ensureParent(file);
    createPrivateFile(file);
    return openSync(file, 'a');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : code === 'ENOTDIR' || code === 'EEXIST' ? 'a part of the path is a file, not a folder' : code === 'EROFS' ? 'read-only file system' : code === 'ENOENT' ? 'its folder does not exist and cannot be made there' : (err as Error).message;
    throw new FloatdError('CONFIG_INVALID', `setting log.destination: cannot write the log file ${file}: ${why}`, { setting: 'log.destination' });
  }
}

export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
