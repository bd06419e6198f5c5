#!/usr/bin/env node
import { processIo } from '../../../src/adapters/console/command-line.js';
import { runVendorCli } from './run-vendor-cli.js';

// A reader that goes away (`floatd-vendor activations list | head`) ends the command quietly.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw err;
});
process.stderr.on('error', () => {});

runVendorCli(process.argv.slice(2), processIo).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`floatd-vendor: ${String(err)}\n`);
    process.exitCode = 1;
  },
);
