/**
 * An HTTP client (a browser, curl, a health check) pointed at an NDJSON port
 * gets a short HTTP answer saying where HTTP is, instead of NDJSON errors it
 * cannot show.
 */

/** A request line, as the first line of an HTTP/1.x request: `GET / HTTP/1.1`. */
const REQUEST_LINE = /^(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|CONNECT|TRACE) \S+ HTTP\/\d(\.\d)?$/;

export function isHttpRequestLine(line: string): boolean {
  return REQUEST_LINE.test(line);
}

/** `HTTP/1.1 400 Bad Request` with a one-line plain-text body; the connection closes after it. */
export function httpBadRequest(body: string): string {
  const text = `${body.replace(/[\r\n]+/g, ' ')}\n`;
  return (
    'HTTP/1.1 400 Bad Request\r\n' +
    'Content-Type: text/plain; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(text)}\r\n` +
    'Connection: close\r\n' +
    '\r\n' +
    text
  );
}

export interface WebListenerAddress {
  readonly tls: boolean;
  readonly address: string;
  readonly port: number;
}

/** What the body says: this port's protocol, and the web endpoint's address(es) if there is one. */
export function misdirectedHttpBody(web: readonly WebListenerAddress[]): string {
  const where = web.map((l) => {
    const scheme = l.tls ? 'https' : 'http';
    if (l.address === '::' || l.address === '0.0.0.0' || l.address === '') return `${scheme} on port ${l.port} of this host`;
    return `${scheme}://${l.address.includes(':') ? `[${l.address}]` : l.address}:${l.port}/`;
  });
  const head = "floatd: this port speaks floatd's NDJSON lease protocol (one JSON object per line, see docs/protocol.md), not HTTP";
  return where.length === 0 ? `${head}; this server has no web endpoint (http.listen, https.listen)` : `${head}; the web endpoint is ${where.join(' and ')}`;
}
