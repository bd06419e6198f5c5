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

async function start(): Promise<string> {
  server = new TcpServer(
    { listeners: [{ name: 'tcp', host: '127.0.0.1', port: 0 }], frameMaxBytes: 1024, handshakeTimeoutMs: 5000, idleTimeoutMs: 0, maxConnections: 10, backlog: 16, keepAliveMs: 0 },
    handler,
  );
  const [bound] = await server.start();
  return `127.0.0.1:${bound!.port}`;
}

describe('TcpServer', () => {
  it('answers each request when its reply is ready, the quick ones first', async () => {
    const address = await start();
    const t = await TcpTransport.connect(address);
    const order: string[] = [];
    const slowReply = t.request('slow').then(() => order.push('slow'));
    await slow.started;
    await t.request('ping').then(() => order.push('ping'));
    slow.finish();
    await slowReply;
    expect(order).toEqual(['ping', 'slow']);
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
