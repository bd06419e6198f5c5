/**
 * The ceiling the lease server is measured against: a bare NDJSON server in
 * Node that parses each line and answers it with one write, with nothing
 * behind it (no storage, no signing). Its reply to a renewal has the shape and
 * about the size of floatd's (a lease with a fixed token), so both move the
 * same bytes. Prints `{"port":N}` on stdout once listening.
 *
 *   node dist/scripts/bench-bare.js [port]
 */
import { createServer } from 'node:net';

const TOKEN = 'e'.repeat(36) + '.' + 'p'.repeat(240) + '.' + 's'.repeat(86);

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending = '';
  socket.on('data', (d: Buffer) => {
    const text = pending + d.toString();
    let start = 0;
    for (let nl = text.indexOf('\n', start); nl >= 0; nl = text.indexOf('\n', start)) {
      const line = text.slice(start, nl);
      start = nl + 1;
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(line) as Record<string, unknown>;
      } catch {
        socket.write('{"ok":false,"error":{"code":"BAD_REQUEST"}}\n');
        continue;
      }
      const reply =
        msg['op'] === 'renew' || msg['op'] === 'acquire'
          ? { id: msg['id'], ok: true, lease: { id: msg['lease'] ?? 'bare', product: 'bench', expiresInMs: 1800000, renewAfterMs: 900000, leaseMs: 1800000, token: TOKEN } }
          : { id: msg['id'], ok: true };
      socket.write(`${JSON.stringify(reply)}\n`);
    }
    pending = text.slice(start);
  });
  socket.on('error', () => {});
});
server.maxConnections = 1_000_000;
server.listen({ host: '127.0.0.1', port: Number(process.argv[2] ?? 0), backlog: 4096 }, () => {
  const address = server.address();
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
