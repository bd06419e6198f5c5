import { afterEach, describe, expect, it } from 'vitest';
import { TcpServer, type ConnectionHandler } from '../../src/adapters/tcp/tcp-server.js';
import { TcpTransport } from '../../src/client/tcp-transport.js';

let server: TcpServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

/** The `slow` op: its reply waits until the test calls `finish`; `started` resolves when the server got it. */
let slow: { started: Promise<void>; begin: () => void; finish: () => void };
function resetSlow(): void {
  let begin = () => {};
  const started = new Promise<void>((r) => (begin = r));
  slow = { started, begin, finish: () => {} };
}
resetSlow();
afterEach(resetSlow);

const handler: ConnectionHandler = {
  onMessage: (conn, msg) => {
    conn.markReady();
    if (msg['op'] !== 'slow') return { id: msg['id'], ok: true };
    slow.begin();
    return new Promise((r) => (slow.finish = () => r({ id: msg['id'], ok: true, slow: true })));
  },
  onError: (_conn, msg) => ({ id: msg['id'], ok: false, error: { code: 'INTERNAL', message: 'internal server error' } }),
};

async function start(runBatch?: (fn: () => void) => void): Promise<string> {
  server = new TcpServer(
    { listeners: [{ name: 'tcp', host: '127.0.0.1', port: 0 }], frameMaxBytes: 1024, handshakeTimeoutMs: 5000, idleTimeoutMs: 0, maxConnections: 10, backlog: 16, keepAliveMs: 0, runBatch },
    handler,
  );
  const [bound] = await server.start();
  return `127.0.0.1:${bound!.port}`;
}

describe('TcpServer group commit', () => {
  it('runs every request read in one turn inside one batch', async () => {
    const batches: number[] = [];
    let current = 0;
    const address = await start((fn) => {
      current = 0;
      const wrapped = handler.onMessage;
      handler.onMessage = (c, m) => {
        current++;
        return wrapped(c, m);
      };
      try {
        fn();
      } finally {
        handler.onMessage = wrapped;
      }
      batches.push(current);
    });
    const t = await TcpTransport.connect(address);
    const replies = await Promise.all(Array.from({ length: 20 }, () => t.request('ping')));
    expect(replies.every((r) => r.ok)).toBe(true);
    expect(batches.reduce((a, b) => a + b, 0)).toBe(20);
    expect(batches.length).toBeLessThan(20);
    t.close();
  });

  it('answers every request of a batch whose commit fails with INTERNAL, never with success', async () => {
    const address = await start((fn) => {
      fn();
      throw new Error('disk I/O error');
    });
    const t = await TcpTransport.connect(address);
    const replies = await Promise.all([t.request('ping'), t.request('slow')]);
    expect(replies.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['INTERNAL', 'INTERNAL']);
    slow.finish();
    t.close();
  });

  it('lets in-flight replies go out on stop', async () => {
    const address = await start();
    const t = await TcpTransport.connect(address);
    const pending = t.request('slow');
    await slow.started;
    const stopping = server!.stop();
    slow.finish();
    await stopping;
    expect(await pending).toMatchObject({ ok: true, slow: true });
  });
});
