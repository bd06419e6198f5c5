#!/usr/bin/env node
import { FloatdError } from './domain/errors.js';
import { didYouMean } from './domain/suggest.js';
import { VERSION } from './app/version.js';
import { processIo } from './cli/common.js';
import { ACTIVATE_USAGE, activate, deactivate, fingerprint } from './cli/activate.js';
import { ADMIN_USAGE, admin } from './cli/admin.js';
import { TRUST_USAGE, trust } from './cli/trust.js';
import { LICENSE_USAGE, license } from './cli/license.js';
import { LOG_USAGE, log } from './cli/log.js';
import { REPORT_USAGE, report } from './cli/report.js';
import { RULES_USAGE, rules } from './cli/rules.js';
import { RUN_USAGE, run } from './cli/run.js';
import { SERVE_USAGE, serve } from './cli/serve.js';
import { STATUS_USAGE, status } from './cli/status.js';
import { VENDOR_USAGE, vendor } from './cli/vendor.js';

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
${RUN_USAGE}
${VENDOR_USAGE}
floatd version | --version

floatd COMMAND --help shows one command's usage.`;

const COMMANDS: Record<string, { usage: string; run: (args: string[]) => Promise<number> }> = {
  serve: { usage: SERVE_USAGE, run: (a) => serve(a, processIo) },
  status: { usage: STATUS_USAGE, run: (a) => status(a, processIo) },
  log: { usage: LOG_USAGE, run: (a) => log(a, processIo) },
  report: { usage: REPORT_USAGE, run: (a) => report(a, processIo) },
  license: { usage: LICENSE_USAGE, run: (a) => license(a, processIo) },
  activate: { usage: ACTIVATE_USAGE, run: (a) => activate(a, processIo) },
  deactivate: { usage: ACTIVATE_USAGE, run: (a) => deactivate(a, processIo) },
  fingerprint: { usage: ACTIVATE_USAGE, run: (a) => fingerprint(a, processIo) },
  trust: { usage: TRUST_USAGE, run: (a) => trust(a, processIo) },
  rules: { usage: RULES_USAGE, run: (a) => rules(a, processIo) },
  admin: { usage: ADMIN_USAGE, run: (a) => admin(a, processIo) },
  run: { usage: RUN_USAGE, run: (a) => run(a, processIo) },
  vendor: { usage: VENDOR_USAGE, run: (a) => vendor(a, processIo) },
  version: {
    usage: 'floatd version (or floatd --version)',
    run: async () => {
      processIo.out(VERSION);
      return 0;
    },
  },
};

/** `--help` anywhere among a command's own flags (for `run`, before the `--` that starts the wrapped command). */
function asksForHelp(args: readonly string[]): boolean {
  const own = args.includes('--') ? args.slice(0, args.indexOf('--')) : args;
  return own.includes('--help') || own.includes('-h');
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    const topic = command === 'help' && args[0] !== undefined ? COMMANDS[args[0]] : undefined;
    processIo.out(topic?.usage ?? USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === '--version' || command === '-V') return COMMANDS['version']!.run([]);
  const entry = COMMANDS[command];
  if (entry === undefined) {
    processIo.err(`floatd: unknown command "${command}"${didYouMean(command, Object.keys(COMMANDS))}\nRun floatd --help for the list of commands.`);
    return 2;
  }
  if (asksForHelp(args)) {
    processIo.out(entry.usage);
    return 0;
  }
  try {
    return await entry.run(args);
  } catch (err) {
    if (err instanceof FloatdError) {
      processIo.err(`floatd ${command}: ${err.code}: ${err.message}`);
      return err.code === 'USAGE' ? 2 : 1;
    }
    // A fault floatd did not foresee: say what it was, without a stack trace (FLOATD_DEBUG=1 shows it).
    const detail = process.env['FLOATD_DEBUG'] ? ((err as Error).stack ?? String(err)) : ((err as Error).message ?? String(err));
    processIo.err(`floatd ${command}: INTERNAL: ${detail}`);
    return 1;
  }
}

// A reader that goes away (`floatd log | head`) ends the command quietly, as in any other Unix tool.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.stderr.on('error', () => {});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`floatd: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
