import { connect } from 'node:net';
import fc from 'fast-check';

/**
 * Property-based fuzzing of what clients send. The seed is fixed so CI runs
 * the same frames every time; FUZZ_SEED=n runs others, and FUZZ_RUNS=n more
 * or fewer of them. A failure reports the seed and the shrunk counterexample.
 */
export function fuzzParameters(defaultRuns: number): { seed: number; numRuns: number } {
  const seed = process.env['FUZZ_SEED'] === undefined ? 20261122 : Number(process.env['FUZZ_SEED']);
  const numRuns = process.env['FUZZ_RUNS'] === undefined ? defaultRuns : Number(process.env['FUZZ_RUNS']);
  if (!Number.isInteger(seed) || !Number.isInteger(numRuns) || numRuns < 1) throw new Error('FUZZ_SEED and FUZZ_RUNS must be integers');
  return { seed, numRuns };
}

/** A JSON value as text, so that what JavaScript cannot hold (1e999, own `__proto__` keys) can be sent. */
export type JsonText = string;

const RESERVED = ['__proto__', 'constructor', 'prototype'];

const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
const control = fc.integer({ min: 0, max: 0x9f }).filter((c) => c < 0x20 || c >= 0x7f).map((c) => String.fromCharCode(c));

/** Strings that are wrong as names in one way or another (and some that are fine). */
export const hostileString: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('', ' ', 'alice', 'cad', 'hello', 'toString', '__proto__', 'constructor', 'x'.repeat(256), 'x'.repeat(257), '😀'.repeat(256), '😀'.repeat(257)),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.tuple(fc.string({ maxLength: 8 }), loneSurrogate, fc.string({ maxLength: 8 })).map(([a, s, b]) => a + s + b),
  fc.tuple(fc.string({ maxLength: 8 }), control, fc.string({ maxLength: 8 })).map(([a, c, b]) => a + c + b),
  fc.integer({ min: 250, max: 3000 }).map((n) => 'n'.repeat(n)),
);

/** Number tokens JSON allows but JavaScript cannot hold exactly, or at all. */
const hostileNumber: fc.Arbitrary<JsonText> = fc.oneof(
  fc.constantFrom('1e999', '-1e999', '1E400', '9007199254740992', '9007199254740993', '-9007199254740993', '123456789012345678901234567890', '1e308', '-0', '0.5', '1.0', '2', '0', '-1'),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.integer().map(String),
);

const key: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...RESERVED, 'toString', 'valueOf', 'toJSON', 'hasOwnProperty', 'op', 'id', 'v', 'client', 'user', 'host', 'instance', 'product', 'lease') },
  { weight: 1, arbitrary: hostileString },
);

/** Any JSON value as text, of bounded size, leaning to what breaks careless code. */
export const hostileValue: fc.Arbitrary<JsonText> = fc.letrec<{ value: JsonText }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 3, arbitrary: hostileString.map((s) => JSON.stringify(s)) },
    { weight: 2, arbitrary: hostileNumber },
    // Type confusion: what a careless String(x), x.length or template literal trips on.
    {
      weight: 3,
      arbitrary: fc.constantFrom('true', 'false', 'null', '{}', '[]', '{"toString":1}', '{"toString":{}}', '{"valueOf":1,"toString":null}', '{"toJSON":null}', '{"length":1e999}', '["alice"]', '[1]', '"1"'),
    },
    { weight: 1, arbitrary: fc.array(tie('value'), { maxLength: 4 }).map((items) => `[${items.join(',')}]`) },
    { weight: 1, arbitrary: fc.array(fc.tuple(key, tie('value')), { maxLength: 4 }).map((entries) => `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`) },
    { weight: 1, arbitrary: fc.integer({ min: 5, max: 2000 }).map((n) => '['.repeat(n) + ']'.repeat(n)) },
    { weight: 1, arbitrary: fc.integer({ min: 5, max: 2000 }).map((n) => '{"a":'.repeat(n) + '1' + '}'.repeat(n)) },
  ),
})).value;

/** A message as entries, so one field can be replaced by hostile text and the rest stays plausible. */
type Entries = Array<[string, JsonText | Entries]>;

function render(entries: Entries): JsonText {
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${typeof v === 'string' ? v : render(v)}`).join(',')}}`;
}

const users = fc.constantFrom('fz-ann', 'fz-bob', 'fz-cyd', 'Zoë', '山田');
const plausible = {
  id: fc.oneof(fc.integer({ min: 0, max: 1000 }).map(String), fc.string({ maxLength: 10 }).map((s) => JSON.stringify(s))),
  product: fc.constantFrom('cad', 'paint', 'CAD').map((s) => JSON.stringify(s)),
  lease: fc.oneof(fc.uuid(), fc.constantFrom('nope', 'x')).map((s) => JSON.stringify(s)),
  client: fc.tuple(users, fc.constantFrom('i1', 'i2', 'i3'), fc.constantFrom('h1', 'h2')).map(([u, i, h]): Entries => [
    ['user', JSON.stringify(u)],
    ['instance', JSON.stringify(i)],
    ['host', JSON.stringify(h)],
  ]),
};

/** A request as a client would write it: the op and its usual fields. */
export const plausibleRequest: fc.Arbitrary<Entries> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.tuple(plausible.id, plausible.client, plausible.product).map(([id, client, product]): Entries => [['op', '"hello"'], ['id', id], ['v', '1'], ['client', client], ['product', product]]),
  },
  { weight: 2, arbitrary: fc.tuple(plausible.id, plausible.product).map(([id, product]): Entries => [['op', '"acquire"'], ['id', id], ['product', product]]) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('"renew"', '"release"'), plausible.id, plausible.lease).map(([op, id, lease]): Entries => [['op', op], ['id', id], ['lease', lease]]) },
  { weight: 1, arbitrary: fc.tuple(fc.constantFrom('"status"', '"ping"', '"teleport"'), plausible.id).map(([op, id]): Entries => [['op', op], ['id', id]]) },
);

/** A plausible request with one field (maybe a nested one, maybe a new one) replaced or added. */
export const mutatedRequest: fc.Arbitrary<JsonText> = fc
  .tuple(plausibleRequest, fc.nat(), fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: key }), hostileValue, fc.boolean())
  .map(([entries, pick, extraKey, value, nested]) => {
    const copy: Entries = entries.map(([k, v]) => [k, typeof v === 'string' ? v : v.map(([a, b]) => [a, b] as [string, JsonText | Entries])]);
    if (extraKey !== undefined) {
      copy.push([extraKey, value]);
      return render(copy);
    }
    const at = pick % copy.length;
    const [name, current] = copy[at]!;
    if (nested && typeof current !== 'string' && current.length > 0) current[pick % current.length]![1] = value;
    else copy[at] = [name, value];
    return render(copy);
  });

/** One line a hostile or broken client might send (no newline inside). */
export const hostileFrame: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 6, arbitrary: mutatedRequest.map((t) => Buffer.from(t)) },
  { weight: 2, arbitrary: plausibleRequest.map((e) => Buffer.from(render(e))) },
  { weight: 1, arbitrary: hostileValue.map((t) => Buffer.from(t)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b.filter((x) => x !== 0x0a))) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 100 }).map((s) => Buffer.from(s.replaceAll('\n', ' '))) },
);

/**
 * Sends lines on a new connection, shuts the sending side, and collects every
 * line the server answers until it closes (or `timeoutMs` passes).
 */
export function exchange(address: string, lines: readonly Buffer[], timeoutMs = 10_000): Promise<{ replies: string[]; timedOut: boolean }> {
  const [host, port] = address.split(':');
  return new Promise((resolve) => {
    const socket = connect({ host, port: Number(port) });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (timedOut: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ replies: Buffer.concat(chunks).toString('utf8').split('\n').filter((l) => l !== ''), timedOut });
    };
    const timer = setTimeout(() => finish(true), timeoutMs);
    socket.on('data', (d: Buffer) => chunks.push(d));
    socket.on('close', () => finish(false));
    socket.on('error', () => finish(false));
    socket.end(Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  });
}
