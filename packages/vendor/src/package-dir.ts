import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

function isVendorPackage(dir: string): boolean {
  const file = join(dir, 'package.json');
  if (!existsSync(file)) return false;
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown }).name === 'floatd-vendor';
  } catch {
    return false;
  }
}

/**
 * The floatd-vendor package's folder (its package.json and migrations/), found from
 * wherever this module runs: its sources, its own build (packages/vendor/dist), or
 * floatd's build, which carries it for the deprecated `floatd vendor` alias.
 */
export function vendorPackageDir(): string {
  if (cached !== undefined) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    for (const candidate of [dir, join(dir, 'packages', 'vendor')]) {
      if (isVendorPackage(candidate)) {
        cached = candidate;
        return candidate;
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error('cannot find the floatd-vendor package folder');
    dir = parent;
  }
}

/** The floatd-vendor package's version. */
export function vendorVersion(): string {
  return (JSON.parse(readFileSync(join(vendorPackageDir(), 'package.json'), 'utf8')) as { version: string }).version;
}
