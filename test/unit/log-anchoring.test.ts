import { describe, expect, it } from 'vitest';
import { judgeAnchoring, policyNote, policyOf, type AnchorFacts, type RunMark } from '../../src/domain/log-anchoring.js';

const MIN = 60_000;
const POLICY = { everyEntries: 1000, everyMs: 10 * MIN };
const started = (id: number, ts = id * 1000, note = policyNote(POLICY)): RunMark => ({ id, ts, event: 'server-started', message: `floatd 1.0 listening on 127.0.0.1:8990; ${note}` });
const stopped = (id: number, ts = id * 1000): RunMark => ({ id, ts, event: 'server-stopped', message: 'clean stop' });
const cp = (...ids: number[]) => ids.map((eventId) => ({ eventId, headHash: `h${eventId}` }));

function facts(over: Partial<AnchorFacts>): AnchorFacts {
  return { entries: 100, last: { id: 100, ts: 100_000 }, checkpoints: [], marks: [], tail: { entries: 0, fromTs: null, toTs: null }, running: false, fallback: { everyEntries: 50, everyMs: MIN }, ...over };
}

describe('judging the checkpoints a lease log must have', () => {
  it('reads the policy a start entry records, and round-trips it', () => {
    expect(policyOf(started(1).message)).toEqual(POLICY);
    expect(policyOf('floatd 0.9 listening on 127.0.0.1:8990')).toBeNull();
    expect(policyOf(null)).toBeNull();
  });

  it('passes runs with their start and stop checkpoints, and an empty log', () => {
    expect(judgeAnchoring(facts({ entries: 0, last: null })).problem).toBeNull();
    const r = judgeAnchoring(facts({ checkpoints: cp(3, 40, 41, 100), marks: [started(3), stopped(40), started(41), stopped(100)] }));
    expect(r).toMatchObject({ problem: null, uncleanStops: [], runningSince: null, policy: POLICY });
  });

  it('reports a crashed run, restarted or not, without failing; a running server is no crash', () => {
    const restarted = judgeAnchoring(facts({ checkpoints: cp(3, 41, 100), marks: [started(3), started(41), stopped(100)] }));
    expect(restarted).toMatchObject({ problem: null, uncleanStops: [{ startedId: 3, lastId: 40, restarted: { id: 41, ts: 41_000 } }] });
    const notYet = judgeAnchoring(facts({ checkpoints: cp(3, 90), marks: [started(3)], tail: { entries: 10, fromTs: 91_000, toTs: 100_000 } }));
    expect(notYet).toMatchObject({ problem: null, uncleanStops: [{ startedId: 3, lastId: 100, restarted: null }] });
    const live = judgeAnchoring(facts({ checkpoints: cp(3, 90), marks: [started(3)], tail: { entries: 10, fromTs: 91_000, toTs: 100_000 }, running: true }));
    expect(live).toMatchObject({ problem: null, uncleanStops: [], runningSince: { id: 3 } });
  });

  it('fails a missing start or stop checkpoint of a marked run, and ignores runs of servers that did not promise them', () => {
    expect(judgeAnchoring(facts({ checkpoints: cp(40, 100), marks: [started(3), stopped(40), started(41), stopped(100)] })).problem).toMatchObject({ kind: 'unanchored', id: 3 });
    expect(judgeAnchoring(facts({ checkpoints: cp(3, 41, 100), marks: [started(3), stopped(40), started(41), stopped(100)] })).problem).toMatchObject({ kind: 'unanchored', id: 40 });
    const legacy = started(3, 3000, 'no promise here');
    expect(judgeAnchoring(facts({ checkpoints: cp(100), marks: [legacy, stopped(40), started(41), stopped(100)] })).problem).toMatchObject({ kind: 'unanchored', id: 41 });
    expect(judgeAnchoring(facts({ checkpoints: cp(41, 100), marks: [legacy, stopped(40), started(41), stopped(100)] })).problem).toBeNull();
  });

  it('fails a tail longer than one interval of the run that wrote it (in entries or entry time), with the fallback where no run recorded one', () => {
    const marks = [started(3)];
    const tail = (entries: number, spanMs: number, running = false) => judgeAnchoring(facts({ checkpoints: cp(3), marks, running, tail: { entries, fromTs: 4000, toTs: 4000 + spanMs } }));
    expect(tail(1000, 10 * MIN).problem).toBeNull();
    expect(tail(1001, 0).problem).toMatchObject({ kind: 'unanchored', id: 4 });
    expect(tail(5, 10 * MIN + 61_000, true).problem?.detail).toMatch(/5 entries after the last signed checkpoint \(#3\).*over 11(\.\d)? min: more than one checkpoint interval \(1000 entries or 10 min\)/);
    // No marked run: the verifier's settings (50 entries, 1 minute).
    expect(judgeAnchoring(facts({ checkpoints: cp(10), tail: { entries: 51, fromTs: 1, toTs: 2 } })).problem).toMatchObject({ kind: 'unanchored' });
    expect(judgeAnchoring(facts({ checkpoints: cp(10), tail: { entries: 50, fromTs: 1, toTs: 2 } })).problem).toBeNull();
  });

  it('fails a log with entries and no checkpoint, and an anchor no checkpoint has', () => {
    expect(judgeAnchoring(facts({})).problem).toMatchObject({ kind: 'unanchored', id: 100 });
    const base = { checkpoints: cp(3, 100), marks: [started(3), stopped(100)] };
    expect(judgeAnchoring(facts({ ...base, anchor: 'h3' }))).toMatchObject({ problem: null, anchor: { eventId: 3, headHash: 'h3' } });
    expect(judgeAnchoring(facts({ ...base, anchor: 'h4' })).problem).toMatchObject({ kind: 'anchor-not-found' });
  });
});
