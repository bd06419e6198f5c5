import { afterEach, describe, expect, it } from 'vitest';
import type { ErrorCode } from '../../src/domain/errors.js';
import { FairQueue } from '../../src/adapters/tcp/fair-queue.js';
import { OutputBudget } from '../../src/adapters/tcp/output-budget.js';
import { TcpConnection, type Connection, type ConnectionSettings } from '../../src/adapters/tcp/tcp-connection.js';
import { clockTimers } from '../../src/adapters/tcp/timers.js';
import { FakeClock } from '../support/fake-clock.js';
import { FakeSocket, settle } from '../support/fake-socket.js';

type Reply = unknown | Promise<unknown>;

/** One connection on a fake socket and a fake clock, with a handler the test writes. */
function open(onMessage: (conn: Connection, message: Record<string, unknown>) => Reply, overrides: Partial<ConnectionSettings> & { bound?: number } = {}) {
  const clock = new FakeClock();
  const socket = new FakeSocket();
  const output = new OutputBudget(overrides.bound ?? 64 << 10, 32 << 20);
  const errors: Array<{ code: ErrorCode; detail: string }> = [];
  const paused: number[] = [];
  const dropped: number[] = [];
  const closed: Connection[] = [];
  const settings: ConnectionSettings = { frameMaxBytes: 1024, handshakeTimeoutMs: 1000, idleTimeoutMs: 0, drainTimeoutMs: 30_000, ...overrides };
  const conn = new TcpConnection(
    socket,
    { id: 1, remote: '192.0.2.1', listener: 'tcp', tls: false, peer: null },
    {
      settings,
      timers: clockTimers(clock),
      output,
      // The round's time budget never runs out here: how far a round gets does not depend on the machine's speed.
      queue: new FairQueue({ requestsPerTurn: 4, budgetMs: 3, now: () => 0 }),
      events: {
        protocolError: (_c, code, detail) => errors.push({ code, detail }),
        paused: (_c, bytes) => paused.push(bytes),
        slowReaderDropped: (_c, bytes) => dropped.push(bytes),
      },
      dispatch: (c, message, started, done) => {
        const reply = onMessage(c, message);
        if (!(reply instanceof Promise)) {
          if (reply !== undefined) c.send(reply);
          return;
        }
        started();
        void reply.then((r) => c.send(r)).finally(done);
      },
      closed: (c) => closed.push(c),
    },
  );
  sockets.push(socket);
  return { clock, socket, output, conn, errors, paused, dropped, closed };
}

const sockets: FakeSocket[] = [];
afterEach(() => {
  for (const s of sockets.splice(0)) s.destroy();
});

/** Marks the connection ready on hello, answers everything with its id. */
const echo = (conn: Connection, message: Record<string, unknown>) => {
  if (message['op'] === 'hello') conn.markReady();
  return { id: message['id'], ok: true };
};

const HELLO = '{"op":"hello","id":0}\n';

describe('TcpConnection', () => {
  it('awaits a hello: without one it answers HANDSHAKE_TIMEOUT, finishes, and is destroyed when the peer lingers', async () => {
    const t = open(echo);
    expect(t.conn.phase).toBe('awaiting-hello');
    t.clock.advance(999);
    expect(t.errors).toEqual([]);
    t.clock.advance(1);
    expect(t.errors).toEqual([{ code: 'HANDSHAKE_TIMEOUT', detail: 'no hello within 1 s' }]);
    expect(t.conn.phase).toBe('finishing');
    await settle();
    expect(t.socket.lines()).toEqual([{ ok: false, error: { code: 'HANDSHAKE_TIMEOUT', message: 'no hello within 1 s' } }]);
    expect(t.socket.writableEnded).toBe(true);
    // Input after that is read and dropped.
    t.socket.peerSends(HELLO);
    await settle();
    expect(t.socket.lines()).toHaveLength(1);
    t.clock.advance(1000);
    expect(t.socket.destroyed).toBe(true);
    await settle();
    expect(t.conn.phase).toBe('closed');
    expect(t.closed).toEqual([t.conn]);
    expect(t.clock.pendingTimers()).toBe(0);
  });

  it('is open once the handler marks it ready, and the handshake timer is gone', async () => {
    const t = open(echo);
    t.socket.peerSends(HELLO);
    await settle();
    expect(t.conn.phase).toBe('open');
    expect(t.socket.lines()).toEqual([{ id: 0, ok: true }]);
    t.clock.advance(60_000);
    expect(t.errors).toEqual([]);
    expect(t.conn.phase).toBe('open');
  });

  it('answers pipelined requests, many in one read, in order', async () => {
    const t = open(echo);
    t.socket.peerSends(HELLO + Array.from({ length: 20 }, (_, i) => `{"op":"ping","id":${i + 1}}\n`).join(''));
    await settle();
    await settle();
    expect(t.socket.lines().map((l) => l['id'])).toEqual(Array.from({ length: 21 }, (_, i) => i));
  });

  it('puts a request split across reads back together', async () => {
    const t = open(echo);
    t.socket.peerSends('{"op":"hel');
    await settle();
    expect(t.socket.lines()).toEqual([]);
    t.socket.peerSends('lo","id":7}\n');
    await settle();
    expect(t.socket.lines()).toEqual([{ id: 7, ok: true }]);
  });

  it('counts complete requests, not bytes, for the idle timeout', async () => {
    const t = open(echo, { idleTimeoutMs: 3000 });
    t.socket.peerSends(HELLO);
    await settle();
    t.clock.advance(2000);
    t.socket.peerSends('{"op":"ping","id":1}\n');
    await settle();
    t.clock.advance(2000);
    expect(t.conn.phase).toBe('open');
    // A byte of a request does not count.
    t.socket.peerSends('{');
    await settle();
    t.clock.advance(1000);
    expect(t.errors).toEqual([{ code: 'IDLE_TIMEOUT', detail: 'no request for 3 s' }]);
    expect(t.conn.phase).toBe('finishing');
  });

  it('answers ten bad lines in a row with BAD_REQUEST, then finishes; a good line in between starts the count again', async () => {
    const t = open(echo);
    t.socket.peerSends(HELLO + 'x\n'.repeat(9) + '{"op":"ping","id":1}\n' + 'x\n'.repeat(9));
    await settle();
    await settle();
    expect(t.conn.phase).toBe('open');
    t.socket.peerSends('x\n');
    await settle();
    expect(t.conn.phase).toBe('finishing');
    expect(t.errors.filter((e) => e.code === 'BAD_REQUEST')).toHaveLength(19);
  });

  it('answers a line over the frame limit with FRAME_TOO_LARGE and finishes', async () => {
    const t = open(echo, { frameMaxBytes: 16 });
    t.socket.peerSends(`${'x'.repeat(40)}\n`);
    await settle();
    expect(t.errors.map((e) => e.code)).toEqual(['FRAME_TOO_LARGE']);
    expect(t.conn.phase).toBe('finishing');
  });

  it('answers an HTTP request line as the first line with an HTTP 400 and finishes', async () => {
    const t = open(echo, { misdirectedHttp: () => 'use the web endpoint\n' });
    t.socket.peerSends('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await settle();
    expect(t.socket.text()).toMatch(/^HTTP\/1\.1 400 /);
    expect(t.socket.text()).toContain('use the web endpoint');
    expect(t.errors.map((e) => e.code)).toEqual(['BAD_REQUEST']);
    expect(t.conn.phase).toBe('finishing');
  });

  it('awaits the replies of at most 8 requests at once; the next is handled when one is answered', async () => {
    const finish: Array<() => void> = [];
    const t = open((conn, message) => {
      conn.markReady();
      return new Promise((resolve) => finish.push(() => resolve({ id: message['id'], ok: true })));
    });
    t.socket.peerSends(Array.from({ length: 12 }, (_, i) => `{"op":"slow","id":${i}}\n`).join(''));
    await settle();
    // Four at once, four more on the next turn.
    expect(finish).toHaveLength(4);
    await settle();
    expect(finish).toHaveLength(8);
    expect(t.conn.awaiting).toBe(8);
    expect(t.socket.isPaused()).toBe(true);
    finish[0]!();
    await settle();
    await settle();
    expect(finish).toHaveLength(9);
    for (const f of finish.slice(1)) f();
    await settle();
    await settle();
    for (const f of finish.slice(9)) f();
    await settle();
    expect(t.socket.lines()).toHaveLength(12);
    expect(t.conn.awaiting).toBe(0);
  });

  it('closes its side once a half-closed peer has every reply', async () => {
    let finish = () => {};
    const t = open((conn, message) => {
      conn.markReady();
      return new Promise((resolve) => (finish = () => resolve({ id: message['id'], ok: true })));
    });
    t.socket.peerSends('{"op":"slow","id":1}\n');
    t.socket.peerEnds();
    await settle();
    expect(t.socket.writableEnded).toBe(false);
    finish();
    await settle();
    expect(t.socket.lines()).toEqual([{ id: 1, ok: true }]);
    expect(t.socket.writableEnded).toBe(true);
    await settle();
    expect(t.conn.phase).toBe('closed');
  });

  describe('when its replies back up', () => {
    const big = (conn: Connection, message: Record<string, unknown>) => {
      conn.markReady();
      return { id: message['id'], ok: true, pad: 'p'.repeat(600) };
    };

    it('stops reading past its bound, and reads and answers the rest in order once the peer reads again', async () => {
      const t = open(big, { bound: 1000 });
      t.socket.holding = true;
      t.socket.peerSends(Array.from({ length: 6 }, (_, i) => `{"op":"ping","id":${i}}\n`).join(''));
      await settle();
      expect(t.conn.outputPaused).toBe(true);
      expect(t.socket.isPaused()).toBe(true);
      expect(t.paused).toHaveLength(1);
      expect(t.paused[0]).toBeGreaterThan(1000);
      expect(t.output.pausedConnections).toBe(1);
      expect(t.output.unsentBytes).toBe(t.paused[0]);
      t.socket.release();
      for (let i = 0; i < 6; i++) await settle();
      expect(t.conn.outputPaused).toBe(false);
      expect(t.socket.lines().map((l) => l['id'])).toEqual([0, 1, 2, 3, 4, 5]);
      expect(t.output.pausedConnections).toBe(0);
    });

    it('is dropped when they do not drain within the drain timeout', async () => {
      const t = open(big, { bound: 1000, drainTimeoutMs: 5000 });
      t.socket.holding = true;
      t.socket.peerSends(Array.from({ length: 6 }, (_, i) => `{"op":"ping","id":${i}}\n`).join(''));
      await settle();
      t.clock.advance(4999);
      expect(t.dropped).toEqual([]);
      t.clock.advance(1);
      expect(t.dropped).toEqual([t.paused[0]]);
      expect(t.errors.map((e) => e.code)).toEqual(['IDLE_TIMEOUT']);
      expect(t.socket.destroyed).toBe(true);
      await settle();
      expect(t.conn.phase).toBe('closed');
      expect(t.output.pausedConnections).toBe(0);
      expect(t.output.unsentBytes).toBe(0);
      expect(t.clock.pendingTimers()).toBe(0);
    });
  });

  it('on close gives back its share, clears its timers and tells the server once', async () => {
    const t = open(echo, { idleTimeoutMs: 5000 });
    expect(t.clock.pendingTimers()).toBe(2);
    t.socket.destroy();
    await settle();
    expect(t.conn.phase).toBe('closed');
    expect(t.closed).toEqual([t.conn]);
    expect(t.clock.pendingTimers()).toBe(0);
    // Nothing is sent once closed.
    t.conn.send({ ok: true });
    expect(t.socket.written).toEqual([]);
  });
});
