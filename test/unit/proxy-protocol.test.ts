import { describe, expect, it } from 'vitest';
import { ProxyHeaderReader, V1_MAX_BYTES, plainAddress, type HeaderResult } from '../../src/adapters/net/proxy-protocol.js';

const V2_SIGNATURE = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

/** A v2 header written out byte by byte from the specification (not with the library under use). */
function v2(versionCommand: number, familyTransport: number, body: number[]): Buffer {
  return Buffer.from([...V2_SIGNATURE, versionCommand, familyTransport, body.length >> 8, body.length & 0xff, ...body]);
}

const u16 = (n: number) => [n >> 8, n & 0xff];
const V2_TCP4 = v2(0x21, 0x11, [203, 0, 113, 7, 10, 0, 0, 1, ...u16(51234), ...u16(8989)]);
const V2_TCP6 = v2(0x21, 0x21, [
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x07,
  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
  ...u16(40000), ...u16(8443),
]);
const V2_LOCAL = v2(0x20, 0x00, []);
/** PROXY over TCP4 followed by a TLV (type 0x04 NOOP, 3 bytes), which floatd skips. */
const V2_TCP4_TLV = v2(0x21, 0x11, [198, 51, 100, 9, 10, 0, 0, 1, ...u16(1), ...u16(2), 0x04, 0x00, 0x03, 0xaa, 0xbb, 0xcc]);

const PAYLOAD = Buffer.from('{"op":"hello","id":1}\n');

const valid: Array<[string, Buffer, Record<string, unknown>]> = [
  ['v1 TCP4', Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 51234 8989\r\n'), { version: 1, command: 'proxy', source: { address: '203.0.113.7', port: 51234 }, destination: { address: '10.0.0.1', port: 8989 } }],
  ['v1 TCP6', Buffer.from('PROXY TCP6 2001:db8:0:0::7 2001:db8::1 40000 8443\r\n'), { version: 1, command: 'proxy', source: { address: '2001:db8::7', port: 40000 } }],
  ['v1 TCP6 with an IPv4-mapped source', Buffer.from('PROXY TCP6 ::ffff:192.0.2.5 ::1 1 2\r\n'), { version: 1, source: { address: '192.0.2.5' } }],
  ['v1 UNKNOWN', Buffer.from('PROXY UNKNOWN\r\n'), { version: 1, command: 'local' }],
  ['v1 UNKNOWN with addresses', Buffer.from('PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n'), { version: 1, command: 'local' }],
  ['v2 PROXY TCP4', V2_TCP4, { version: 2, command: 'proxy', source: { address: '203.0.113.7', port: 51234 }, destination: { address: '10.0.0.1', port: 8989 } }],
  ['v2 PROXY TCP6', V2_TCP6, { version: 2, command: 'proxy', source: { address: '2001:db8::7', port: 40000 }, destination: { address: '2001:db8::1', port: 8443 } }],
  ['v2 PROXY TCP4 with a TLV', V2_TCP4_TLV, { version: 2, command: 'proxy', source: { address: '198.51.100.9', port: 1 } }],
  ['v2 LOCAL (a health check)', V2_LOCAL, { version: 2, command: 'local' }],
  ['v2 PROXY with family UNSPEC', v2(0x21, 0x00, []), { version: 2, command: 'local' }],
];

/** Pushes `pieces` until the reader answers; returns the answer and what followed the header, later pieces included. */
function feed(pieces: Buffer[]): { result: HeaderResult; after: Buffer; answeredAt: number } {
  const reader = new ProxyHeaderReader();
  for (let i = 0; i < pieces.length; i++) {
    const result = reader.push(pieces[i]!);
    if (result.state === 'incomplete') continue;
    const after = result.state === 'complete' ? Buffer.concat([result.rest, ...pieces.slice(i + 1)]) : Buffer.alloc(0);
    return { result, after, answeredAt: i };
  }
  return { result: { state: 'incomplete' }, after: Buffer.alloc(0), answeredAt: -1 };
}

describe('ProxyHeaderReader', () => {
  it.each(valid)('reads %s whole, and gives back the bytes after it', (_name, header, expected) => {
    const { result, after } = feed([Buffer.concat([header, PAYLOAD])]);
    expect(result).toMatchObject({ state: 'complete', header: expected });
    expect(after).toEqual(PAYLOAD);
  });

  it.each(valid)('reads %s split at every offset, and byte by byte', (_name, header, expected) => {
    const bytes = Buffer.concat([header, PAYLOAD]);
    for (let at = 0; at <= bytes.length; at++) {
      const { result, after, answeredAt } = feed([bytes.subarray(0, at), bytes.subarray(at)]);
      expect(result, `split at ${at}`).toMatchObject({ state: 'complete', header: expected });
      expect(after.toString('latin1'), `split at ${at}`).toBe(PAYLOAD.toString('latin1'));
      // Not answered before the whole header was in, and answered as soon as it was.
      expect(answeredAt, `split at ${at}`).toBe(at >= header.length ? 0 : 1);
    }
    const single = feed([...bytes].map((b) => Buffer.from([b])));
    expect(single.result).toMatchObject({ state: 'complete', header: expected });
    expect(single.answeredAt).toBe(header.length - 1);
    expect(single.after).toEqual(PAYLOAD);
  });

  it('waits for more while a v2 header is short of the length it announced', () => {
    const reader = new ProxyHeaderReader();
    expect(reader.push(V2_TCP6.subarray(0, 16))).toEqual({ state: 'incomplete' });
    expect(reader.push(V2_TCP6.subarray(16, V2_TCP6.length - 1))).toEqual({ state: 'incomplete' });
    expect(reader.push(V2_TCP6.subarray(V2_TCP6.length - 1))).toMatchObject({ state: 'complete', rest: Buffer.alloc(0) });
  });

  it.each([
    ['an NDJSON request', Buffer.from('{"op":"hello"}\n')],
    ['an HTTP request', Buffer.from('GET / HTTP/1.1\r\n\r\n')],
    ['a TLS ClientHello', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])],
    ['lower-case proxy', Buffer.from('proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n')],
    ['a v2 signature gone wrong in its last byte', Buffer.from([...V2_SIGNATURE.slice(0, 11), 0x0b, 0x21, 0x11, 0, 0])],
  ])('refuses %s as no header, at the first byte that cannot start one', (_name, bytes) => {
    const reader = new ProxyHeaderReader();
    const answers = [...bytes].map((b) => reader.push(Buffer.from([b])));
    const first = answers.findIndex((a) => a.state !== 'incomplete');
    expect(answers[first]).toMatchObject({ state: 'invalid', problem: 'no-header' });
    const firstWrong = [...bytes].findIndex((b, i) => b !== Buffer.from('PROXY ')[i] && b !== V2_SIGNATURE[i]);
    expect(first).toBe(firstWrong);
  });

  it.each([
    ['a v1 address that is not one', 'PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n'],
    ['a v1 TCP4 line with IPv6 addresses', 'PROXY TCP4 ::1 ::2 1 2\r\n'],
    ['a v1 TCP6 line with IPv4 addresses', 'PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['a v1 port out of range', 'PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n'],
    ['a v1 line missing a field', 'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n'],
    ['a v1 protocol it does not know', 'PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n'],
    ['a v1 line ending in LF alone', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n'],
  ])('refuses %s as malformed', (_name, line) => {
    expect(feed([Buffer.from(`${line}{"op":"hello"}\n`)]).result).toMatchObject({ state: 'invalid', problem: 'malformed-header' });
  });

  it.each([
    ['version 1 in a v2 block', v2(0x11, 0x11, new Array(12).fill(1))],
    ['an unknown command', v2(0x22, 0x11, new Array(12).fill(1))],
    ['an unknown address family', v2(0x21, 0x51, new Array(12).fill(1))],
    ['TCP4 with fewer bytes than two addresses and ports', v2(0x21, 0x11, [1, 2, 3, 4])],
    ['TCP6 with only IPv4-sized addresses', v2(0x21, 0x21, new Array(12).fill(1))],
  ])('refuses a v2 header with %s as malformed', (_name, header) => {
    expect(feed([header]).result).toMatchObject({ state: 'invalid', problem: 'malformed-header' });
  });

  it(`refuses a v1 line without its end within ${V1_MAX_BYTES} bytes, without waiting for more`, () => {
    const reader = new ProxyHeaderReader();
    const long = Buffer.from(`PROXY TCP6 ${'a'.repeat(200)}`);
    expect(reader.push(long.subarray(0, V1_MAX_BYTES - 1))).toEqual({ state: 'incomplete' });
    expect(reader.push(long.subarray(V1_MAX_BYTES - 1, V1_MAX_BYTES))).toMatchObject({ state: 'invalid', problem: 'header-too-long' });
    expect(feed([Buffer.from(`PROXY TCP4 1.2.3.4 5.6.7.8 1 2${' '.repeat(100)}\r\n`)]).result).toMatchObject({ problem: 'header-too-long' });
  });

  it('refuses a v2 header announcing more than the cap as soon as its length is known', () => {
    const announced = Buffer.from([...V2_SIGNATURE, 0x21, 0x11, 0xff, 0xff]);
    expect(new ProxyHeaderReader().push(announced)).toMatchObject({ state: 'invalid', problem: 'header-too-long' });
    const justOver = v2(0x21, 0x11, [...new Array(12).fill(1), ...new Array(4096 - 16 - 12 + 1).fill(0)]);
    expect(feed([justOver]).result).toMatchObject({ problem: 'header-too-long' });
    const atCap = v2(0x21, 0x11, [10, 0, 0, 1, 10, 0, 0, 2, 0, 1, 0, 2, ...new Array(4096 - 16 - 12).fill(0)]);
    expect(feed([atCap]).result).toMatchObject({ state: 'complete', header: { source: { address: '10.0.0.1' } } });
  });

  it('keeps its answer: later bytes belong to the protocol, not the header', () => {
    const reader = new ProxyHeaderReader();
    const first = reader.push(Buffer.from('PROXY UNKNOWN\r\nabc'));
    expect(reader.push(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'))).toBe(first);
  });
});

describe('plainAddress', () => {
  it('shows IPv6 short and IPv4-mapped IPv6 as IPv4, as remote addresses are shown elsewhere', () => {
    expect(plainAddress('2001:0db8:0000:0000:0000:0000:0000:0001')).toBe('2001:db8::1');
    expect(plainAddress('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(plainAddress('10.1.2.3')).toBe('10.1.2.3');
  });
});
