/**
 * NDJSON framing: bytes in, complete lines out. Knows nothing of sockets.
 * Lines are split on `\n` (a trailing `\r` is dropped); blank lines are skipped;
 * a line longer than `maxFrameBytes` (excluding the newline) is an error,
 * reported as soon as it is known, without buffering the rest.
 */
export type DecodeResult =
  | { readonly kind: 'line'; readonly text: string }
  | { readonly kind: 'too-large'; readonly bytes: number };

export class NdjsonDecoder {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private failed = false;

  constructor(private readonly maxFrameBytes: number) {}

  /** Bytes received but not yet ended by a newline. */
  pendingBytes(): number {
    return this.buffered;
  }

  /** Feeds bytes; returns the complete frames they finish (and at most one error, last). */
  push(data: Buffer): DecodeResult[] {
    if (this.failed) return [];
    const out: DecodeResult[] = [];
    let start = 0;
    for (;;) {
      const nl = data.indexOf(10, start);
      if (nl < 0) break;
      const size = this.buffered + (nl - start);
      // One byte of slack for a `\r` before the `\n`; checked exactly below.
      if (size > this.maxFrameBytes + 1) {
        this.failed = true;
        out.push({ kind: 'too-large', bytes: size });
        return out;
      }
      let line: Buffer;
      if (this.buffered === 0) {
        line = data.subarray(start, nl);
      } else {
        this.chunks.push(data.subarray(start, nl));
        line = Buffer.concat(this.chunks, size);
        this.chunks = [];
        this.buffered = 0;
      }
      let end = line.length;
      if (end > 0 && line[end - 1] === 13) end -= 1;
      if (end > this.maxFrameBytes) {
        this.failed = true;
        out.push({ kind: 'too-large', bytes: end });
        return out;
      }
      if (end > 0) {
        const text = line.toString('utf8', 0, end);
        if (text.trim() !== '') out.push({ kind: 'line', text });
      }
      start = nl + 1;
    }
    if (start < data.length) {
      const rest = data.length - start;
      if (this.buffered + rest > this.maxFrameBytes + 1) {
        this.failed = true;
        out.push({ kind: 'too-large', bytes: this.buffered + rest });
        return out;
      }
      // Copy: the socket may reuse its buffer.
      this.chunks.push(Buffer.from(data.subarray(start)));
      this.buffered += rest;
    }
    return out;
  }
}

/** One JSON value per line, `\n`-terminated. */
export function encodeFrame(message: unknown): string {
  return `${JSON.stringify(message)}\n`;
}

export type ParsedMessage =
  | { readonly ok: true; readonly message: Record<string, unknown> }
  | { readonly ok: false; readonly message: string; readonly id?: unknown };

/** Parses a frame's text into a JSON object, or says why it is not one. */
export function parseFrame(text: string): ParsedMessage {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    return { ok: false, message: `invalid JSON: ${(err as Error).message}` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: `each line must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}` };
  }
  return { ok: true, message: value as Record<string, unknown> };
}
