import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ACTIVATION_SERVICE_CODES, ERROR_CODES, OPERATOR_CODES, WIRE_CODES } from '../../src/domain/errors.js';
import { LEASE_EVENTS } from '../../src/domain/events.js';

const ROOT = join(import.meta.dirname, '..', '..');
const SRC = join(ROOT, 'src');
const VENDOR = join(ROOT, 'packages', 'vendor', 'src');
/** The one module of floatd that may reach into the vendor's package: the deprecated `floatd vendor` alias. */
const VENDOR_ALIAS = join(SRC, 'cli', 'vendor-alias.ts');
/**
 * What the vendor's package shares with the server: the pure domain, the token and file
 * formats (src/adapters/crypto), and the few generic adapters its service runs on.
 */
const SHARED_DIRS = [join(SRC, 'domain'), join(SRC, 'adapters', 'crypto')];
const SHARED_FILES = [
  'adapters/console/command-line.ts',
  'adapters/clock/system-clock.ts',
  'adapters/log/logger.ts',
  'adapters/tls/tls-context.ts',
  'adapters/fs/private-files.ts',
  'adapters/sqlite/migrate.ts',
  'adapters/http/vendor-server.ts',
  'config/listen-address.ts',
].map((f) => join(SRC, f));

/** The file a relative import names (its .js spelled as the .ts it is compiled from). */
function importedFile(file: string, spec: string): string {
  return resolve(dirname(file), spec).replace(/\.js$/, '.ts');
}

function inside(dir: string, file: string): boolean {
  return !relative(dir, file).startsWith('..');
}

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function imports(file: string): string[] {
  return [...readFileSync(file, 'utf8').matchAll(/^(?:import|export)[^'"]*from\s+'([^']+)'/gm)].map((m) => m[1]!);
}

const LAYER_ORDER = ['domain', 'adapters', 'client', 'app', 'cli'] as const;

function layerOf(file: string): string {
  const rel = relative(SRC, file).split('/');
  return rel.length === 1 ? 'main' : rel[0]!;
}

describe('architecture', () => {
  it('keeps the domain pure: no node built-ins, no packages, no wall clock, no environment', () => {
    for (const file of files(join(SRC, 'domain'))) {
      for (const spec of imports(file)) {
        const inside = spec.startsWith('.') && !relative(join(SRC, 'domain'), resolve(dirname(file), spec)).startsWith('..');
        expect(inside, `${relative(ROOT, file)} imports ${spec}`).toBe(true);
      }
      const text = readFileSync(file, 'utf8');
      expect(/Date\.now\(|process\.env|performance\.now\(/.test(text), `${relative(ROOT, file)} reads the clock or environment`).toBe(false);
    }
  });

  it('keeps the unit project free of sockets and processes (npm run test:unit stays seconds)', () => {
    const doors = /^node:(net|tls|http|https|http2|child_process|worker_threads)$|^playwright|\/(tcp-transport|lease-client|server|floatd|vendor-service|serve)\.js$/;
    for (const file of files(join(ROOT, 'test', 'unit'))) {
      for (const spec of imports(file)) expect(doors.test(spec), `${relative(ROOT, file)} imports ${spec}: it belongs in test/integration`).toBe(false);
    }
  });

  it('points dependencies inward: cli → app → adapters → domain', () => {
    const allowed: Record<string, string[]> = {
      domain: ['domain'],
      adapters: ['domain', 'adapters', 'config'],
      config: ['domain', 'config'],
      client: ['domain', 'adapters', 'config', 'client'],
      app: ['domain', 'adapters', 'config', 'app', 'client'],
      cli: ['domain', 'adapters', 'config', 'app', 'client', 'cli'],
      main: ['domain', 'app', 'cli'],
    };
    expect(Object.keys(allowed).sort()).toEqual([...LAYER_ORDER, 'config', 'main'].sort());
    for (const file of files(SRC)) {
      const from = layerOf(file);
      if (from === 'index.ts') continue;
      for (const spec of imports(file)) {
        // Outside src/ there is only the vendor's package, reached by the alias alone (checked below).
        if (!spec.startsWith('.') || !inside(SRC, importedFile(file, spec))) continue;
        const target = layerOf(join(file, '..', spec));
        expect(allowed[from], `${relative(ROOT, file)} (${from}) imports ${spec} (${target})`).toContain(target);
      }
    }
  });

  it('keeps the vendor\'s package apart: floatd reaches it only through the alias, it reaches floatd only for what they share', () => {
    const vendorFiles = files(VENDOR);
    expect(vendorFiles.length).toBeGreaterThan(5);
    const reachers = files(SRC).filter((file) => imports(file).some((spec) => spec.startsWith('.') && inside(VENDOR, importedFile(file, spec))));
    expect(reachers.map((f) => relative(ROOT, f))).toEqual([relative(ROOT, VENDOR_ALIAS)]);
    for (const file of vendorFiles) {
      for (const spec of imports(file)) {
        if (!spec.startsWith('.')) continue;
        const to = importedFile(file, spec);
        const shared = inside(VENDOR, to) || SHARED_DIRS.some((d) => inside(d, to)) || SHARED_FILES.includes(to);
        expect(shared, `${relative(ROOT, file)} imports ${spec}, which floatd does not share with the vendor's tools`).toBe(true);
      }
    }
  });

  it('reads the wall clock only in the clock adapter', () => {
    for (const file of files(SRC)) {
      if (file.includes('/adapters/clock/') || file.includes('/cli/') || file.includes('/client/')) continue;
      expect(/Date\.now\(\)/.test(readFileSync(file, 'utf8')), relative(ROOT, file)).toBe(false);
    }
  });

  it('knows every top-level folder of src, so a new one gets a place in the layering', () => {
    const known = ['domain', 'adapters', 'config', 'client', 'app', 'cli'];
    const folders = readdirSync(SRC).filter((name) => statSync(join(SRC, name)).isDirectory());
    expect(folders.filter((f) => !known.includes(f))).toEqual([]);
  });

  it('ships no test doubles: fakes live in test/support', () => {
    expect(files(SRC).filter((f) => /\/fake-[^/]*\.ts$/.test(f) || /class Fake/.test(readFileSync(f, 'utf8'))).map((f) => relative(ROOT, f))).toEqual([]);
  });

  it('documents every error code in docs/errors.md, and documents no code that does not exist', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
    const documented = [...doc.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]!);
    expect(ERROR_CODES.filter((code) => !documented.includes(code))).toEqual([]);
    expect(documented.filter((code) => !(ERROR_CODES as readonly string[]).includes(code))).toEqual([]);
    expect(new Set(documented).size).toBe(documented.length);
  });

  it('says in docs/errors.md who sees each code, as the code groups them: wire codes on the wire, the activation service\'s from the vendor, operator codes never on the wire', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'errors.md'), 'utf8');
    const where = new Map([...doc.matchAll(/^\| `([A-Z_]+)` \| ([^|]+) \|/gm)].map((m) => [m[1]!, m[2]!.trim()]));
    expect(WIRE_CODES.filter((code) => !/\bwire\b/.test(where.get(code) ?? ''))).toEqual([]);
    expect(ACTIVATION_SERVICE_CODES.filter((code) => !/\bvendor\b/.test(where.get(code) ?? ''))).toEqual([]);
    expect(OPERATOR_CODES.filter((code) => /\bwire\b/.test(where.get(code) ?? ''))).toEqual([]);
  });

  it('documents every lease-log event in docs/lease-log.md, and no event that does not exist', () => {
    const doc = readFileSync(join(ROOT, 'docs', 'lease-log.md'), 'utf8');
    const section = doc.slice(doc.indexOf('## Events and fields'), doc.indexOf('\n## ', doc.indexOf('## Events and fields') + 1));
    const rows = [...section.matchAll(/^\| (`[a-z-]+`(?:, `[a-z-]+`)*) \|/gm)].flatMap((m) => [...m[1]!.matchAll(/`([a-z-]+)`/g)].map((n) => n[1]!));
    const fields = new Set(['id', 'ts', 'event', 'product', 'user', 'host', 'instance', 'remote', 'listener', 'code', 'reason', 'message', 'actor', 'count']);
    const documented = rows.filter((r) => !fields.has(r));
    expect(LEASE_EVENTS.filter((e) => !documented.includes(e))).toEqual([]);
    expect(documented.filter((e) => !(LEASE_EVENTS as readonly string[]).includes(e))).toEqual([]);
  });
});
