import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/helpers.js';
import { startServer, type TestServer } from '../support/server.js';

const ROOT = join(import.meta.dirname, '..', '..');
const PACKAGE = join(ROOT, 'packages', 'client');
const run = promisify(execFile);

beforeAll(() => {
  if (!existsSync(join(PACKAGE, 'dist', 'client', 'index.js'))) throw new Error('packages/client/dist is missing: run npm run build (npm install does it)');
});

const servers: TestServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.stop();
});

describe('the floatd-client package', () => {
  it('installs on its own, without the server or its native modules, and takes and releases a lease', async () => {
    const manifest = JSON.parse(readFileSync(join(PACKAGE, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    const root = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string; dependencies: Record<string, string> };
    expect(manifest.version).toBe(root.version);
    expect(manifest.dependencies).toEqual({ jose: root.dependencies['jose'] });

    const packed = tempDir('floatd-pack-');
    const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', packed], { cwd: PACKAGE });
    const tarball = join(packed, (JSON.parse(stdout) as Array<{ filename: string }>)[0]!.filename);
    const project = tempDir('floatd-product-');
    writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'product', private: true, type: 'module' }));
    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: project });
    const modules = join(project, 'node_modules');
    for (const serverOnly of ['better-sqlite3', 'pino', 'floatd']) expect(existsSync(join(modules, serverOnly)), serverOnly).toBe(false);
    expect(existsSync(join(modules, 'jose'))).toBe(true);
    expect(existsSync(join(modules, 'floatd-client', 'dist', 'client', 'index.d.ts'))).toBe(true);

    const s = await startServer();
    servers.push(s);
    writeFileSync(
      join(project, 'product.js'),
      `import { LeaseClient } from 'floatd-client';
       const client = new LeaseClient({ server: ${JSON.stringify(s.address)}, product: 'cad', user: 'packaged' });
       const lease = await client.acquire();
       console.log(lease.id);
       await client.close();`,
    );
    const child = spawn(process.execPath, ['product.js'], { cwd: project });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const [code] = (await once(child, 'exit')) as [number | null];
    expect({ code, out }).toMatchObject({ code: 0, out: expect.stringMatching(/^[0-9a-f-]{36}\n$/) });
    expect((await s.floatd.store.queryEvents({ user: 'packaged' })).map((e) => [e.event, e.leaseId])).toEqual([
      ['granted', out.trim()],
      ['released', out.trim()],
    ]);
  }, 60_000);
});
