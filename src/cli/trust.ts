import { readFileSync } from 'node:fs';
import { readProductTerms } from '../adapters/crypto/product-file.js';
import { PRODUCT_META, runningServerPid } from '../app/data-dir.js';
import { openStore } from '../app/stores.js';
import { FloatdError } from '../domain/errors.js';
import { CONFIG_FLAGS, configFrom, parse, type Io } from './common.js';

export const TRUST_USAGE = `floatd trust FILE [--config FILE] [--data-dir DIR]
  install the vendor's signed product file: its key is trusted, its products served, its evaluation terms the most there is
  (installed once: a file signed by another vendor key is refused; the same vendor's newer file replaces it)`;

export async function trust(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parse(args, { ...CONFIG_FLAGS }, true);
  if (positionals.length !== 1) throw new FloatdError('USAGE', `trust takes one product file\n${TRUST_USAGE}`);
  let text: string;
  try {
    text = readFileSync(positionals[0]!, 'utf8');
  } catch (err) {
    throw new FloatdError('INPUT_INVALID', `cannot read the product file ${positionals[0]}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`);
  }
  const terms = await readProductTerms(text);
  const config = configFrom(io, values);
  const store = openStore(config, 'write');
  try {
    const stored = await store.getMeta(PRODUCT_META);
    if (stored !== undefined && stored !== '') {
      const current = await readProductTerms(stored);
      if (current.vendorKid !== terms.vendorKid) {
        throw new FloatdError('PRODUCT_FILE_INVALID', `this data directory already trusts the product file of vendor key ${current.vendorKid}; a product file is installed once, and this one is signed by ${terms.vendorKid}`);
      }
      if (terms.issuedAt < current.issuedAt) {
        throw new FloatdError('PRODUCT_FILE_INVALID', `the product file is older (${new Date(terms.issuedAt).toISOString()}) than the one installed (${new Date(current.issuedAt).toISOString()})`);
      }
    }
    await store.setMeta(PRODUCT_META, terms.token);
  } finally {
    store.close();
  }
  const running = runningServerPid(config) !== null;
  io.out(
    `trusted the product file of vendor key ${terms.vendorKid}: products ${terms.products.join(', ')}; evaluation ${terms.evaluation.seats === 0 || terms.evaluation.days === 0 ? 'off' : `at most ${terms.evaluation.seats} seat(s) for ${terms.evaluation.days} day(s)`}` +
      (running ? '; restart the server to apply it' : ''),
  );
  return 0;
}
