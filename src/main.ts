#!/usr/bin/env node
import { FloatdError } from './domain/errors.js';
import { VERSION } from './app/version.js';
import { processIo } from './cli/common.js';
import { LICENSE_USAGE, license } from './cli/license.js';
import { LOG_USAGE, log } from './cli/log.js';
import { RULES_USAGE, rules } from './cli/rules.js';
import { RUN_USAGE, run } from './cli/run.js';
import { SERVE_USAGE, serve } from './cli/serve.js';
import { STATUS_USAGE, status } from './cli/status.js';
import { VENDOR_USAGE, vendor } from './cli/vendor.js';

const USAGE = `floatd ${VERSION}: floating license lease server

${SERVE_USAGE}
${STATUS_USAGE}
${LOG_USAGE}
${LICENSE_USAGE}
${RULES_USAGE}
${RUN_USAGE}
${VENDOR_USAGE}
floatd version`;

const COMMANDS: Record<string, (args: string[]) => Promise<number>> = {
  serve: (a) => serve(a, processIo),
  status: (a) => status(a, processIo),
  log: (a) => log(a, processIo),
  license: (a) => license(a, processIo),
  rules: (a) => rules(a, processIo),
  run: (a) => run(a, processIo),
  vendor: (a) => vendor(a, processIo),
  version: async () => {
    processIo.out(VERSION);
    return 0;
  },
};

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    processIo.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  const run = COMMANDS[command];
  if (run === undefined) {
    processIo.err(`floatd: unknown command "${command}"\n\n${USAGE}`);
    return 2;
  }
  try {
    return await run(args);
  } catch (err) {
    if (err instanceof FloatdError) {
      processIo.err(`floatd ${command}: ${err.code}: ${err.message}`);
      return err.code === 'USAGE' ? 2 : 1;
    }
    processIo.err(`floatd ${command}: ${(err as Error).stack ?? String(err)}`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`floatd: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
