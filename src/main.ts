#!/usr/bin/env node
import { processIo } from './cli/common.js';
import { runCli } from './cli/run-cli.js';

// A reader that goes away (`floatd log | head`) ends the command quietly, as in any other Unix tool.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.stderr.on('error', () => {});

runCli(process.argv.slice(2), processIo).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`floatd: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
