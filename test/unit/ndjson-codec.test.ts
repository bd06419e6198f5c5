import { describe, expect, it } from 'vitest';
import { NdjsonDecoder, encodeFrame, parseFrame } from '../../src/adapters/tcp/ndjson-codec.js';

function decodeAll(chunks: Buffer[], max = 64) {
  const d = new NdjsonDecoder(max);
  return chunks.flatMap((c) => d.push(c));
}

const lines = (rs: ReturnType<typeof decodeAll>) => rs.map((r) => (r.kind === 'line' ? r.text : `!${r.kind}`));

describe('NdjsonDecoder', () => {
  const input = Buffer.from('{"op":"hello","id":1}\n{"op":"acquire","x":"é✓"}\r\n\n  \n{"id":3}\n', 'utf8');
  const expected = ['{"op":"hello","id":1}', '{"op":"acquire","x":"é✓"}', '  ', '{"id":3}'].filter((l) => l.trim() !== '');

  it('decodes the same frames wherever the input is split (every offset)', () => {
    for (let i = 0; i <= input.length; i++) {
      expect(lines(decodeAll([input.subarray(0, i), input.subarray(i)]))).toEqual(expected);
    }
  });

  it('decodes the same frames at every pair of split points', () => {
    for (let i = 0; i <= input.length; i += 3) {
      for (let j = i; j <= input.length; j += 2) {
        expect(lines(decodeAll([input.subarray(0, i), input.subarray(i, j), input.subarray(j)]))).toEqual(expected);
      }
    }
  });

  it('decodes one byte at a time, multi-byte UTF-8 included', () => {
    expect(lines(decodeAll([...input].map((b) => Buffer.from([b]))))).toEqual(expected);
  });

  it('keeps a partial frame until its newline comes', () => {
    const d = new NdjsonDecoder(64);
    expect(d.push(Buffer.from('{"a":'))).toEqual([]);
    expect(d.pendingBytes()).toBe(5);
    expect(lines(d.push(Buffer.from('1}\n')))).toEqual(['{"a":1}']);
    expect(d.pendingBytes()).toBe(0);
  });

  it('accepts a line of exactly the limit, with or without \\r', () => {
    const line = 'x'.repeat(64);
    expect(lines(decodeAll([Buffer.from(`${line}\n`)]))).toEqual([line]);
    expect(lines(decodeAll([Buffer.from(`${line}\r\n`)]))).toEqual([line]);
  });

  it('reports a line one byte over the limit, split anywhere', () => {
    const big = Buffer.from(`${'x'.repeat(65)}\n`);
    for (let i = 0; i <= big.length; i++) {
      expect(lines(decodeAll([big.subarray(0, i), big.subarray(i)]))).toEqual(['!too-large']);
    }
  });

  it('reports an oversized line before its newline arrives, and then stops', () => {
    const d = new NdjsonDecoder(16);
    expect(lines(d.push(Buffer.from('y'.repeat(100))))).toEqual(['!too-large']);
    expect(d.push(Buffer.from('{"ok":1}\n'))).toEqual([]);
  });

  it('returns earlier good frames before the error', () => {
    expect(lines(decodeAll([Buffer.from(`{"a":1}\n${'z'.repeat(200)}`)]))).toEqual(['{"a":1}', '!too-large']);
  });

  it('passes garbage through as text for the parser to refuse', () => {
    const garbage = Buffer.from([0xff, 0xfe, 0x00, 0x41, 0x0a]);
    const out = decodeAll([garbage]);
    expect(out).toHaveLength(1);
    expect(parseFrame((out[0] as { text: string }).text).ok).toBe(false);
  });
});

describe('parseFrame', () => {
  it.each([
    ['{"op":"x"}', true],
    ['[1,2]', false],
    ['null', false],
    ['"str"', false],
    ['42', false],
    ['{bad json}', false],
    ['{"a":1', false],
  ])('%s → ok %s', (text, ok) => {
    expect(parseFrame(text).ok).toBe(ok);
  });

  it('names what was wrong', () => {
    const r = parseFrame('[1]');
    expect(!r.ok && r.message).toMatch(/JSON object, got an array/);
  });

  it('round-trips through encodeFrame', () => {
    const msg = { id: 1, op: 'acquire', product: 'cad\nx' };
    const frame = encodeFrame(msg);
    expect(frame.endsWith('\n')).toBe(true);
    expect(frame.slice(0, -1).includes('\n')).toBe(false);
    const r = parseFrame(frame.trimEnd());
    expect(r.ok && r.message).toEqual(msg);
  });
});
