import type { Duplex } from 'node:stream';
import type { WireCode } from '../../domain/errors.js';
import type { PeerCertificate } from '../tls/tls-context.js';
import type { FairQueue, Waiting } from './fair-queue.js';
import { httpBadRequest, isHttpRequestLine, misdirectedHttpBody } from './misdirected-http.js';
import { NdjsonDecoder, encodeFrame, parseFrame, type DecodeResult } from './ndjson-codec.js';
import type { OutputBudget, OutputShare } from './output-budget.js';
import type { TimerHandle, Timers } from './timers.js';
import { wireError } from './wire-errors.js';

/** What the protocol layer sees of one connection. */
export interface Connection {
  readonly id: number;
  readonly remote: string;
  readonly listener: string;
  /** Whether the connection is TLS (a `tls://` listener). */
  readonly tls: boolean;
  /** The verified client certificate of a TLS connection, or null. */
  readonly peer: PeerCertificate | null;
  /** Protocol state the handler keeps per connection. */
  state: unknown;
  /** Call once the client has said hello: stops the handshake timer. */
  markReady(): void;
  send(message: unknown): void;
  close(): void;
}

/** What a connection tells the server's observers. */
export interface ConnectionEvents {
  protocolError?(conn: Connection, code: WireCode, detail: string): void;
  /** A connection stopped being read because too many of its replies are unsent. */
  paused?(conn: Connection, unsentBytes: number): void;
  /** A connection was dropped because its unsent replies did not drain in time. */
  slowReaderDropped?(conn: Connection, unsentBytes: number): void;
}

export interface ConnectionSettings {
  readonly frameMaxBytes: number;
  /** No hello within this time ends the connection; also how long a finishing connection may linger. */
  readonly handshakeTimeoutMs: number;
  /** 0 turns the idle timeout off. */
  readonly idleTimeoutMs: number;
  readonly drainTimeoutMs: number;
  /** The body of the HTTP 400 an HTTP request line gets as a connection's first line. */
  readonly misdirectedHttp?: () => string;
}

/** What a connection shares with the server that accepted it. */
export interface ConnectionContext {
  readonly settings: ConnectionSettings;
  readonly timers: Timers;
  readonly output: OutputBudget;
  readonly queue: FairQueue;
  readonly events: ConnectionEvents;
  /** Hands one request to the handler; `started` if its reply is awaited, then `done` once sent. */
  dispatch(conn: Connection, message: Record<string, unknown>, started: () => void, done: () => void): void;
  /** The socket closed: give back what the connection held (after the connection let go of its own). */
  closed(conn: Connection): void;
}

export interface ConnectionIdentity {
  readonly id: number;
  readonly remote: string;
  readonly listener: string;
  readonly tls: boolean;
  readonly peer: PeerCertificate | null;
}

/**
 * Where a connection is in its life:
 * - `awaiting-hello`: the handshake timer runs until the handler marks it ready;
 * - `open`: requests are read and handled;
 * - `finishing`: after a protocol error or timeout our side is ended, input is
 *   discarded and the socket is destroyed if the peer does not close in time
 *   (a handshake timer still running keeps running);
 * - `closed`: the socket closed; every timer is cleared and nothing more is done.
 * Apart from the phase, an open connection may be paused for its unsent output
 * (see `OutputBudget`) and its peer may have ended its sending side.
 */
export type ConnectionPhase = 'awaiting-hello' | 'open' | 'finishing' | 'closed';

const MAX_BAD_FRAMES = 10;
/** Requests of one connection handled at a time (when data arrives, and per turn of the fair queue). */
export const REQUESTS_PER_TURN = 4;
/** Requests of one connection awaiting their replies at once; past this the connection's next request waits. */
const MAX_IN_FLIGHT = 8;

/**
 * One NDJSON connection: cuts requests from what it reads, hands them to the
 * handler a few at a time (at most `MAX_IN_FLIGHT` awaiting replies), writes
 * the replies, stops reading while they back up, and runs its handshake,
 * idle, drain and linger timers. The socket is any duplex stream.
 */
export class TcpConnection implements Connection, Waiting {
  readonly id: number;
  readonly remote: string;
  readonly listener: string;
  readonly tls: boolean;
  readonly peer: PeerCertificate | null;
  state: unknown = undefined;

  private phaseNow: ConnectionPhase = 'awaiting-hello';
  private readonly decoder: NdjsonDecoder;
  private readonly share: OutputShare;
  /** Replies beyond the bound come only from requests already in flight and from pushes; far beyond, something is wrong. */
  private readonly hardLimit: number;
  // Bytes read but not yet handled: requests are cut from them one at a time, as they are handled,
  // so a connection that sent a lot while paused holds one read's bytes, not thousands of parsed frames.
  private unread: Buffer | undefined;
  private unreadFrom = 0;
  private badFrames = 0;
  private firstLine = true;
  private inFlight = 0;
  private peerEnded = false;
  private handshake: TimerHandle | undefined;
  private idle: TimerHandle | undefined;
  private drainTimer: TimerHandle | undefined;
  private linger: TimerHandle | undefined;

  constructor(
    private readonly socket: Duplex,
    identity: ConnectionIdentity,
    private readonly context: ConnectionContext,
  ) {
    this.id = identity.id;
    this.remote = identity.remote;
    this.listener = identity.listener;
    this.tls = identity.tls;
    this.peer = identity.peer;
    const { settings, timers } = context;
    this.decoder = new NdjsonDecoder(settings.frameMaxBytes);
    this.share = context.output.share(this.wake);
    this.hardLimit = Math.max(1 << 20, 16 * context.output.connectionBytes);
    socket.on('end', () => {
      this.peerEnded = true;
      this.endWhenAnswered();
    });
    this.handshake = timers.set(settings.handshakeTimeoutMs, () => {
      this.fail('HANDSHAKE_TIMEOUT', `no hello within ${settings.handshakeTimeoutMs / 1000} s`);
      this.finish();
    });
    if (settings.idleTimeoutMs > 0) {
      this.idle = timers.set(settings.idleTimeoutMs, () => {
        if (this.finished) return;
        this.fail('IDLE_TIMEOUT', `no request for ${settings.idleTimeoutMs / 1000} s`);
        this.finish();
      });
    }
    socket.on('data', (data: Buffer) => this.received(data));
    socket.on('error', () => {
      // Resets and the like: the close handler below does the cleanup.
    });
    socket.on('close', () => this.onSocketClose());
  }

  /** Where the connection is in its life. */
  get phase(): ConnectionPhase {
    return this.phaseNow;
  }

  /** Whether the connection is not read now because its replies back up. */
  get outputPaused(): boolean {
    return this.share.paused;
  }

  /** Requests whose replies are awaited now. */
  get awaiting(): number {
    return this.inFlight;
  }

  private get closed(): boolean {
    return this.phaseNow === 'closed';
  }

  /** No more requests are handled: the connection is closing after an error (or closed). */
  private get finished(): boolean {
    return this.phaseNow === 'finishing' || this.phaseNow === 'closed';
  }

  markReady(): void {
    this.context.timers.clear(this.handshake);
    this.handshake = undefined;
    if (this.phaseNow === 'awaiting-hello') this.phaseNow = 'open';
  }

  send(message: unknown): void {
    const socket = this.socket;
    if (this.closed || socket.destroyed || socket.writableEnded) return;
    socket.write(encodeFrame(message), this.afterWrite);
    this.account();
    if (this.share.unsent > this.hardLimit) {
      this.context.events.protocolError?.(this, 'IDLE_TIMEOUT', `peer is not reading its replies (${this.share.unsent} bytes unsent)`);
      this.context.events.slowReaderDropped?.(this, this.share.unsent);
      socket.destroy();
    }
  }

  close(): void {
    if (!this.closed) this.socket.end();
  }

  /** Handles up to `max` unread requests, while replies flow and not too many await theirs; true if more could be handled now. */
  serve(max: number): boolean {
    if (this.closed) return false;
    // Once our side is ended (the server stops), nothing more can be answered.
    if (this.socket.writableEnded) this.unread = undefined;
    let handled = 0;
    // The replies of these requests leave in one write.
    this.socket.cork();
    while (this.unread !== undefined && !this.finished && handled < max) {
      if (this.checkOutput() || this.inFlight >= MAX_IN_FLIGHT) break;
      const frame = this.nextFrame();
      if (frame === undefined) continue;
      // Complete requests count, not bytes: a byte now and then does not keep a connection open.
      this.idle?.refresh();
      handled++;
      this.handle(frame);
    }
    this.socket.uncork();
    if (this.unread === undefined) this.checkOutput();
    this.flow();
    this.endWhenAnswered();
    return !this.closed && !this.finished && this.unread !== undefined && !this.share.paused && this.inFlight < MAX_IN_FLIGHT;
  }

  private received(data: Buffer): void {
    if (this.finished) return;
    if (this.unread === undefined) {
      this.unread = data;
      this.unreadFrom = 0;
    } else {
      // Paused sockets emit no data; this is only in case one more chunk was on its way.
      this.unread = Buffer.concat([this.unread.subarray(this.unreadFrom), data]);
      this.unreadFrom = 0;
    }
    // The first requests at once (a client that sends one at a time waits for nobody); the rest in turn.
    if (this.serve(REQUESTS_PER_TURN)) this.wake();
  }

  /** The next complete line of the unread bytes (or a too-large line), if they hold one; a partial line goes to the decoder. */
  private nextFrame(): DecodeResult | undefined {
    const data = this.unread!;
    const nl = data.indexOf(10, this.unreadFrom);
    let piece: Buffer;
    if (nl < 0) {
      piece = data.subarray(this.unreadFrom);
      this.unread = undefined;
    } else {
      piece = data.subarray(this.unreadFrom, nl + 1);
      this.unreadFrom = nl + 1;
      if (this.unreadFrom >= data.length) this.unread = undefined;
    }
    return this.decoder.push(piece)[0];
  }

  private handle(item: DecodeResult): void {
    if (item.kind === 'too-large') {
      this.fail('FRAME_TOO_LARGE', `a line may hold at most ${this.context.settings.frameMaxBytes} bytes`);
      this.finish();
      return;
    }
    if (this.firstLine && isHttpRequestLine(item.text)) {
      this.context.events.protocolError?.(this, 'BAD_REQUEST', 'an HTTP request on an NDJSON port');
      this.socket.write(httpBadRequest(this.context.settings.misdirectedHttp?.() ?? misdirectedHttpBody([])));
      this.finish();
      return;
    }
    this.firstLine = false;
    const parsed = parseFrame(item.text);
    if (!parsed.ok) {
      this.fail('BAD_REQUEST', parsed.message);
      if (++this.badFrames >= MAX_BAD_FRAMES) this.finish();
      return;
    }
    this.badFrames = 0;
    this.context.dispatch(this, parsed.message, () => this.inFlight++, () => {
      this.inFlight--;
      if (this.unread !== undefined) this.wake();
      this.endWhenAnswered();
    });
  }

  private fail(code: WireCode, message: string, id?: unknown): void {
    this.context.events.protocolError?.(this, code, message);
    this.send(wireError(id, code, message));
  }

  /** Ends the connection after the replies so far, and destroys it if the peer does not close in time. */
  private finish(): void {
    if (this.finished) return;
    this.phaseNow = 'finishing';
    this.unread = undefined;
    this.socket.end();
    this.linger = this.context.timers.set(this.context.settings.handshakeTimeoutMs, () => this.socket.destroy());
    this.flow();
  }

  /** The peer finished sending: close our side once every request it sent is answered. */
  private endWhenAnswered(): void {
    if (this.peerEnded && this.inFlight === 0 && (this.unread === undefined || this.finished) && !this.closed) this.socket.end();
  }

  /** Reads from the socket only while there is nothing queued and its replies flow (or to discard input once finished). */
  private flow(): void {
    if (this.closed) return;
    if (this.finished || (this.unread === undefined && !this.share.paused)) this.socket.resume();
    else this.socket.pause();
  }

  /** Queues the connection for a turn in the fair queue. */
  private readonly wake = (): void => {
    if (!this.closed) this.context.queue.wait(this);
  };

  private readonly afterWrite = (): void => {
    this.account();
    if (this.share.paused) this.wake();
  };

  /** Brings this connection's share of the unsent total up to date (after every write, and when it completes). */
  private account(): void {
    this.share.account(this.closed ? 0 : this.socket.writableLength);
  }

  /** Starts or ends a pause for unsent output; true while paused. */
  private checkOutput(): boolean {
    const blocked = !this.closed && this.share.blocked();
    if (blocked && !this.share.paused) {
      this.share.pause();
      this.context.events.paused?.(this, this.share.unsent);
      const drainMs = this.context.settings.drainTimeoutMs;
      this.drainTimer = this.context.timers.set(drainMs, () => {
        if (this.closed) return;
        this.context.events.protocolError?.(this, 'IDLE_TIMEOUT', `peer is not reading its replies (${this.share.unsent} bytes unsent for ${drainMs / 1000} s)`);
        this.context.events.slowReaderDropped?.(this, this.share.unsent);
        this.socket.destroy();
      });
    } else if (!blocked && this.share.paused) {
      this.unpause();
    }
    return blocked;
  }

  private unpause(): void {
    if (!this.share.resume()) return;
    this.context.timers.clear(this.drainTimer);
  }

  private onSocketClose(): void {
    this.phaseNow = 'closed';
    this.unread = undefined;
    const timers = this.context.timers;
    timers.clear(this.handshake);
    timers.clear(this.idle);
    timers.clear(this.linger);
    this.unpause();
    this.account();
    this.context.queue.remove(this);
    this.context.closed(this);
  }
}
