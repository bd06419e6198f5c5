import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TcpTransport } from '../../src/client/tcp-transport.js';
import { tempDir } from '../support/helpers.js';
import { startServer, type TestServer } from '../support/server.js';

const DOC = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'tls.md'), 'utf8');

/** The first ```sh block after `heading` in docs/tls.md. */
function recipe(heading: string): string {
  const from = DOC.indexOf(heading);
  expect(from, heading).toBeGreaterThan(0);
  return /```sh\n([\s\S]*?)```/.exec(DOC.slice(from))![1]!;
}

/** Runs shell lines as a reader would paste them, in `dir`. */
function sh(script: string, dir: string): string {
  return execFileSync('bash', ['-e', '-c', script], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** Whether a client trusting `ca` can reach the tls:// listener of a server using `cert`/`key` as `host`. */
async function verifiesAs(host: string, dir: string): Promise<void> {
  server = await startServer({ flags: { listeners: [`tls://127.0.0.1:0`], 'tls.certFile': join(dir, 'floatd.crt'), 'tls.keyFile': join(dir, 'floatd.key') } });
  const port = server.floatd.listenerStatus().find((l) => l.scheme === 'tls')!.port;
  const t = await TcpTransport.connect(`tls://${host}:${port}`, { tls: { ca: readFileSync(join(dir, 'ca.crt')) } });
  // Connected means the handshake verified the certificate against ca.crt and the host name.
  expect(await t.request('hello', { v: 1, client: { user: 'ops', instance: 'check-1' } })).toMatchObject({ ok: true });
  t.close();
}

describe('docs/tls.md, run as written', () => {
  it('the one-machine recipe makes a certificate that localhost, 127.0.0.1 and the server itself can verify', async () => {
    const dir = tempDir();
    const out = sh(recipe('### Trying it on one machine'), dir);
    expect(out).toContain('DNS:localhost, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1');
    expect(out).toContain('floatd.crt: OK');
    const made = join(dir, 'floatd-tls');
    await verifiesAs('localhost', made);
    await server!.stop();
    await verifiesAs('127.0.0.1', made);
  });

  it('the recipe for a server puts its own names in the certificate, and localhost too', async () => {
    const dir = tempDir();
    sh(recipe('### Trying it on one machine'), dir);
    const made = join(dir, 'floatd-tls');
    // Everything up to starting the server, which the test does itself.
    const lines = recipe('### For your server').split(/\nfloatd serve/)[0]!;
    const out = sh(lines, made);
    expect(out).toContain('DNS:license.example.com, IP Address:10.0.0.5, DNS:localhost, IP Address:127.0.0.1');
    await verifiesAs('localhost', made);
  });
});
