import { Duplex } from 'node:stream';

/**
 * A duplex stream that stands in for a socket, for unit tests of a connection:
 * the test plays the peer (`peerSends`, `peerEnds`), reads what was written
 * (`lines`), and can make the peer stop reading (`holding`): writes then stay
 * unsent (counted in `writableLength`) until `release()`.
 */
export class FakeSocket extends Duplex {
  readonly written: Buffer[] = [];
  holding = false;
  private readonly held: Array<() => void> = [];

  constructor() {
    super({ allowHalfOpen: true });
  }

  override _read(): void {}

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: (err?: Error | null) => void): void {
    this.written.push(chunk);
    if (this.holding) this.held.push(() => done());
    else done();
  }

  /** The peer reads again: everything unsent is taken. */
  release(): void {
    this.holding = false;
    for (const done of this.held.splice(0)) done();
  }

  peerSends(text: string): void {
    this.push(Buffer.from(text));
  }

  /** The peer shuts its sending side. */
  peerEnds(): void {
    this.push(null);
  }

  /** Everything written, as text. */
  text(): string {
    return Buffer.concat(this.written).toString();
  }

  /** Every line written, parsed as JSON. */
  lines(): Array<Record<string, unknown>> {
    return this.text()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

/** Lets pending stream events and promise callbacks run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
