import type { Io } from '../../../src/adapters/console/command-line.js';
import { FloatdError } from '../../../src/domain/errors.js';
import { VENDOR_USAGE, vendor } from './cli/vendor.js';
import { vendorVersion } from './package-dir.js';

export { VENDOR_USAGE };

const USAGE = `floatd-vendor ${vendorVersion()}: the vendor's tools for floatd (keys, product files, the activation service)

${VENDOR_USAGE}
floatd-vendor version | --version

floatd-vendor --help shows this usage.`;

/**
 * Runs one floatd-vendor command line (argv without `node` and the script) with `io`
 * for its output, environment and working directory, and resolves with its exit
 * status. `main.ts` calls it with the process's own; tests and the deprecated
 * `floatd vendor` alias call it in-process.
 */
export async function runVendorCli(argv: readonly string[], io: Io): Promise<number> {
  const [command] = argv;
  if (command === undefined || command === 'help' || argv.includes('--help') || argv.includes('-h')) {
    io.out(USAGE);
    return command === undefined ? 2 : 0;
  }
  if (command === 'version' || command === '--version' || command === '-V') {
    io.out(vendorVersion());
    return 0;
  }
  try {
    return await vendor([...argv], io);
  } catch (err) {
    if (err instanceof FloatdError) {
      io.err(`floatd-vendor: ${err.code}: ${err.message}`);
      return err.code === 'USAGE' ? 2 : 1;
    }
    // A fault the tools did not foresee: say what it was, without a stack trace (FLOATD_DEBUG=1 shows it).
    const detail = io.env['FLOATD_DEBUG'] ? ((err as Error).stack ?? String(err)) : ((err as Error).message ?? String(err));
    io.err(`floatd-vendor: INTERNAL: ${detail}`);
    return 1;
  }
}
