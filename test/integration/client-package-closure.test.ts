import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

const DIST = join(import.meta.dirname, '..', '..', 'packages', 'client', 'dist');
const ENTRY = join(DIST, 'client', 'index.js');

beforeAll(() => {
  if (!existsSync(ENTRY)) throw new Error('packages/client/dist is missing: run npm run build (npm install does it)');
});

/** Every module the entry loads, following its static and dynamic imports, with the packages they name. */
function closure(entry: string): { files: string[]; packages: Set<string> } {
  const files: string[] = [];
  const packages = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.includes(file)) continue;
    files.push(file);
    const code = readFileSync(file, 'utf8');
    const specs = [
      ...code.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s+'([^']+)'/gm),
      ...code.matchAll(/^\s*import\s+'([^']+)'/gm),
      ...code.matchAll(/\bimport\(\s*['"`]([^'"`]+)['"`]\s*\)/g),
    ].map((m) => m[1]!);
    for (const spec of specs) {
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec));
      else packages.add(spec);
    }
    expect(/\bimport\(\s*[^'"`\s]/.test(code), `${relative(DIST, file)} imports a computed module name`).toBe(false);
    expect(/\brequire\(/.test(code), `${relative(DIST, file)} uses require()`).toBe(false);
  }
  return { files, packages };
}

describe('the floatd-client package', () => {
  it('loads nothing but its own files, jose and Node.js built-ins: no server dependency over TLS or HTTP either', () => {
    const { files, packages } = closure(ENTRY);
    for (const file of files) expect(existsSync(file), `${relative(DIST, file)} is imported but not built`).toBe(true);
    expect([...packages].filter((p) => p !== 'jose' && !p.startsWith('node:'))).toEqual([]);
    // The transports for every address scheme are in the package, without anything of the server's.
    const names = files.map((f) => relative(DIST, f));
    expect(names).toEqual(expect.arrayContaining(['client/tcp-transport.js', 'client/http-transport.js', 'client/tls-material.js']));
    expect(names.filter((n) => /^(app|cli)\/|adapters\/(http|sqlite|log|tls)\//.test(n))).toEqual([]);
    expect([...packages]).toEqual(expect.arrayContaining(['node:tls', 'node:https', 'node:http']));
  });
});
