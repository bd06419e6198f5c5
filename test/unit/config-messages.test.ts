import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { closest } from '../../src/domain/suggest.js';
import { FloatdError } from '../../src/domain/errors.js';
import { tempDir } from '../support/helpers.js';

/** The CONFIG_INVALID message loading `text` as the config file gives, and the file's path. */
function refusal(text: string): { message: string; file: string } {
  const file = join(tempDir(), 'floatd.json');
  writeFileSync(file, text);
  try {
    loadConfig({ configFile: file, env: {}, cwd: '/' });
  } catch (err) {
    expect(err).toBeInstanceOf(FloatdError);
    expect((err as FloatdError).code).toBe('CONFIG_INVALID');
    return { message: (err as Error).message, file };
  }
  throw new Error('the config was accepted');
}

describe('config file mistakes', () => {
  it('a JSON syntax error names the file, the line and the column', () => {
    const trailing = refusal('{\n  "leaseSeconds": 600,\n  "log": { "level": "warn" },\n}\n');
    expect(trailing.message).toBe(`${trailing.file}: line 4, column 1: the config file is not valid JSON: a comma before } (JSON allows no trailing comma)`);
    const quote = refusal('{\n  "leaseSeconds": 600,\n  dataDir: "state"\n}\n');
    expect(quote.message).toMatch(/floatd\.json: line 3, column 3: the config file is not valid JSON: expected a property name in double quotes, found "d"$/);
    const word = refusal('{\n  "tls": {\n    "identityFromCertificate": tru\n  }\n}');
    expect(word.message).toMatch(/floatd\.json: line 3, column 32: the config file is not valid JSON: expected a value .*, found "t"$/);
    expect(refusal('{\n  "leaseSeconds": 600\n').message).toMatch(/line 3, column 1: the config file is not valid JSON: expected "," or "}", found the end of the file$/);
    expect(refusal('{"leaseSeconds": 600} x').message).toMatch(/line 1, column 23: the config file is not valid JSON: expected nothing more/);
    expect(refusal('{"dataDir": "C:\\data"}').message).toMatch(/line 1, column 16: the config file is not valid JSON: expected an escape after the backslash .*, found \\d; a Windows path is written C:\\\\dir or C:\/dir$/);
    // Nothing of the file's text is quoted back (it may hold paths or names the operator did not mean to show).
    expect(refusal('{"a": "secret" "b"}').message).not.toContain('secret');
  });

  it('an unknown setting gets the closest known one, top-level or in a section', () => {
    expect(refusal('{"leaseSecond": 60}').message).toMatch(/unknown setting "leaseSecond"; did you mean "leaseSeconds"\?$/);
    expect(refusal('{"evaluation": {"seat": 3}}').message).toMatch(/unknown setting "evaluation.seat"; did you mean "evaluation.seats"\?$/);
    expect(refusal('{"evalution": {"days": 3}}').message).toMatch(/unknown setting "evalution.days"; did you mean "evaluation.days"\?$/);
    expect(refusal('{"maxconnections": 10}').message).toMatch(/did you mean "maxConnections"\?$/);
    // Nothing close: no guess.
    expect(refusal('{"colour": "blue"}').message).toMatch(/unknown setting "colour"$/);
  });

  it('an environment variable that names no setting is reported with the closest known one, not silently ignored', () => {
    const config = loadConfig({ env: { FLOATD_EVALUATON_SEATS: '3', FLOATD_LEASE_SECONDS: '600', FLOATD_CONFIG: '', FLOATD_ZZZ: '1', HOME: '/root' }, cwd: '/' });
    expect(config.leaseSeconds).toBe(600);
    expect(config.unknownEnvironment).toEqual([
      'environment variable FLOATD_EVALUATON_SEATS names no floatd setting and is ignored; did you mean "FLOATD_EVALUATION_SEATS"?',
      'environment variable FLOATD_ZZZ names no floatd setting and is ignored',
    ]);
  });
});

describe('closest', () => {
  it('picks the nearest spelling, and nothing when every candidate is far', () => {
    expect(closest('stauts', ['serve', 'status', 'log'])).toBe('status');
    expect(closest('lisence', ['license', 'log', 'serve'])).toBe('license');
    expect(closest('vendr', ['vendor', 'version'])).toBe('vendor');
    expect(closest('xyz', ['serve', 'status', 'log'])).toBeNull();
    expect(closest('a', ['log', 'run'])).toBeNull();
  });
});
