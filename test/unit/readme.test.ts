import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(import.meta.dirname, '..', '..');
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

describe('README', () => {
  it('says which Node.js versions floatd needs, up front', () => {
    const quickStart = README.slice(README.indexOf('## Quick start'), README.indexOf('npm install'));
    expect(quickStart).toContain('Node.js 22, 24 or 26');
    expect(quickStart).toMatch(/Node\.js 20 still works but is\s+end-of-life/);
  });

  it('runs floatd as npx floatd in the examples to paste (npm install puts no floatd on the PATH), and says so before the first', () => {
    const blocks = [...README.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
    const bare = blocks.flatMap((b) => b.split('\n')).filter((line) => /^\s*(\$\s*)?floatd\s/.test(line));
    expect(bare).toEqual([]);
    const first = README.indexOf('npx floatd');
    expect(README.indexOf('npm link')).toBeLessThan(README.indexOf('```sh\nnpx floatd'));
    expect(first).toBeGreaterThan(0);
  });
});
