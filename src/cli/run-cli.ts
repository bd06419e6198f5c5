import { FloatdError } from '../domain/errors.js';
import { didYouMean } from '../domain/suggest.js';
import { VERSION } from '../app/version.js';
import type { Io } from './common.js';
import { ACTIVATE_USAGE, activate, deactivate, fingerprint } from './activate.js';
import { ADMIN_USAGE, admin } from './admin.js';
import { TRUST_USAGE, trust } from './trust.js';
import { LICENSE_USAGE, license } from './license.js';
import { HA_USAGE, ha } from './ha.js';
import { LOG_USAGE, log } from './log.js';
import { REPORT_USAGE, report } from './report.js';
import { RULES_USAGE, rules } from './rules.js';
import { RUN_USAGE, run } from './run.js';
import { SERVE_USAGE, serve } from './serve.js';
import { STATUS_USAGE, status } from './status.js';
import { VENDOR_ALIAS_HELP, VENDOR_ALIAS_USAGE, vendorAlias } from './vendor-alias.js';

const USAGE = `floatd ${VERSION}: floating license lease server

${SERVE_USAGE}
${STATUS_USAGE}
${LOG_USAGE}
${REPORT_USAGE}
${LICENSE_USAGE}
${ACTIVATE_USAGE}
${TRUST_USAGE}
${RULES_USAGE}
${ADMIN_USAGE}
${HA_USAGE}
${RUN_USAGE}
${VENDOR_ALIAS_USAGE}
floatd version | --version

floatd COMMAND --help shows one command's usage.`;

const COMMANDS: Record<string, { usage: string; run: (args: string[], io: Io) => Promise<number> }> = {
  serve: { usage: SERVE_USAGE, run: serve },
  status: { usage: STATUS_USAGE, run: status },
  log: { usage: LOG_USAGE, run: log },
  report: { usage: REPORT_USAGE, run: report },
  license: { usage: LICENSE_USAGE, run: license },
  activate: { usage: ACTIVATE_USAGE, run: activate },
  deactivate: { usage: ACTIVATE_USAGE, run: deactivate },
  fingerprint: { usage: ACTIVATE_USAGE, run: fingerprint },
  trust: { usage: TRUST_USAGE, run: trust },
  rules: { usage: RULES_USAGE, run: rules },
  admin: { usage: ADMIN_USAGE, run: admin },
  ha: { usage: HA_USAGE, run: ha },
  run: { usage: RUN_USAGE, run: run },
  vendor: { usage: VENDOR_ALIAS_HELP, run: vendorAlias },
  version: {
    usage: 'floatd version (or floatd --version)',
    run: async (_args, io) => {
      io.out(VERSION);
      return 0;
    },
  },
};

/** `--help` anywhere among a command's own flags (for `run`, before the `--` that starts the wrapped command). */
function asksForHelp(args: readonly string[]): boolean {
  const own = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  return own.includes('--help') || own.includes('-h');
}

/**
 * Runs one floatd command line (argv without `node` and the script) with `io` for its
 * output, environment and working directory, and resolves with its exit status.
 * `main.ts` calls it with the process's own; tests call it in-process.
 */
export async function runCli(argv: readonly string[], io: Io): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    const topic = command === 'help' && args[0] !== undefined ? COMMANDS[args[0]] : undefined;
    io.out(topic?.usage ?? USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') return COMMANDS['version']!.run([], io);
  const entry = COMMANDS[command];
  if (entry === undefined) {
    io.err(`floatd: unknown command "${command}"${didYouMean(command, Object.keys(COMMANDS))}\nRun floatd --help for the list of commands.`);
    return 2;
  }
  if (asksForHelp(args)) {
    io.out(entry.usage);
    return 0;
  }
  try {
    return await entry.run(args, io);
  } catch (err) {
    if (err instanceof FloatdError) {
      io.err(`floatd ${command}: ${err.code}: ${err.message}`);
      return err.code === 'USAGE' ? 2 : 1;
    }
    // A fault floatd did not foresee: say what it was, without a stack trace (FLOATD_DEBUG=1 shows it).
    const detail = io.env['FLOATD_DEBUG'] ? ((err as Error).stack ?? String(err)) : ((err as Error).message ?? String(err));
    io.err(`floatd ${command}: INTERNAL: ${detail}`);
    return 1;
  }
}
