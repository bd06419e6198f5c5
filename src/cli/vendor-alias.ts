import type { Io } from './common.js';
// The one module of floatd that reaches into the vendor's package (test/unit/architecture.test.ts holds it to that).
import { runVendorCli, VENDOR_USAGE } from '../../packages/vendor/src/run-vendor-cli.js';

/** Said once on stderr by every `floatd vendor` command line, before the vendor's tool runs. */
export const VENDOR_DEPRECATION = 'floatd vendor is deprecated and will be removed in the next release; use floatd-vendor';

export const VENDOR_ALIAS_USAGE = `floatd vendor ...   deprecated: the vendor's tools are floatd-vendor now (same subcommands and flags); removed in the next release`;

/** `floatd vendor --help`: the alias, then what floatd-vendor takes. */
export const VENDOR_ALIAS_HELP = `${VENDOR_ALIAS_USAGE}\n\n${VENDOR_USAGE}`;

/**
 * `floatd vendor ARGS...`: for one release, the same as `floatd-vendor ARGS...`
 * (its output and exit status) after one deprecation line on stderr.
 */
export async function vendorAlias(args: string[], io: Io): Promise<number> {
  io.err(VENDOR_DEPRECATION);
  return runVendorCli(args, io);
}
