import { request } from 'node:http';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startServer, type TestServer } from '../support/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

const portOf = (s: TestServer, scheme: string) => s.floatd.listenerStatus().find((l) => l.scheme === scheme)!.port;

/** Writes `text` on a new connection (then ends our side if `end`) and resolves with everything the server sent until it closed. */
function exchange(port: number, text: string, end = false): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port });
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (got += d));
    socket.on('error', reject);
    socket.on('close', () => resolve(got));
    socket.setTimeout(5000, () => socket.destroy(new Error(`no close within 5 s; got ${JSON.stringify(got)}`)));
    if (end) socket.end(text);
    else socket.write(text);
  });
}

describe('HTTP sent to an NDJSON port', () => {
  it('is answered with one HTTP 400 naming the web endpoint, and the connection closes', async () => {
    server = await startServer({ flags: { 'http.listen': ['127.0.0.1:0'] } });
    const tcp = portOf(server, 'tcp');
    const web = `http://127.0.0.1:${portOf(server, 'http')}/`;
    const raw = await exchange(tcp, 'GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\n');
    const [head, body] = raw.split('\r\n\r\n') as [string, string];
    expect(head.split('\r\n')[0]).toBe('HTTP/1.1 400 Bad Request');
    expect(head).toContain('Content-Type: text/plain; charset=utf-8');
    expect(head).toContain('Connection: close');
    expect(head).toContain(`Content-Length: ${Buffer.byteLength(body)}`);
    expect(body).toBe(`floatd: this port speaks floatd's NDJSON lease protocol (one JSON object per line, see docs/protocol.md), not HTTP; the web endpoint is ${web}\n`);
    // What an HTTP client library sees.
    const answer = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
      request({ host: '127.0.0.1', port: tcp, path: '/healthz', method: 'POST' }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, body: text }));
      })
        .on('error', reject)
        .end('{}');
    });
    expect(answer.status).toBe(400);
    expect(answer.body).toContain(`the web endpoint is ${web}`);
  });

  it('without a web endpoint says so; NDJSON clients are unaffected, and a request line after hello is just a bad NDJSON frame', async () => {
    server = await startServer({ flags: { 'http.listen': [] } });
    const tcp = portOf(server, 'tcp');
    const raw = await exchange(tcp, 'HEAD /metrics HTTP/1.0\r\n\r\n');
    expect(raw.startsWith('HTTP/1.1 400 Bad Request\r\n')).toBe(true);
    expect(raw).toMatch(/not HTTP; this server has no web endpoint \(http\.listen, https\.listen\)\n$/);
    const ndjson = await exchange(tcp, '{"op":"hello","id":1,"v":1,"client":{"user":"a","instance":"a-1"}}\nGET / HTTP/1.1\n', true);
    const [hello, second] = ndjson.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(hello).toMatchObject({ id: 1, ok: true });
    expect(second).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
  }, 15_000);
});
