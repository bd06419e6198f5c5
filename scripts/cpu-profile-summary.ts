/**
 * Sums a V8 CPU profile (`node --cpu-prof`, e.g. the server run by
 * `npm run bench -- --server-node-args=--cpu-prof`) by category of self time:
 * SQLite, signing, sockets, the NDJSON protocol, the web endpoint, the lease
 * service, logs and metrics, promises, garbage collection, idle. Native code
 * (JSON.parse, a statement's run) counts for the category of the JavaScript
 * that called it.
 *
 *   node dist/scripts/cpu-profile-summary.js file.cpuprofile [--top 15]
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '15' } } });
if (positionals.length !== 1) throw new Error('usage: cpu-profile-summary file.cpuprofile [--top N]');
const profile = JSON.parse(readFileSync(positionals[0]!, 'utf8')) as Profile;

const RULES: Array<[string, (url: string, fn: string) => boolean]> = [
  ['idle', (_u, f) => f === '(idle)'],
  ['garbage collection', (_u, f) => f === '(garbage collector)'],
  ['SQLite (better-sqlite3, the store)', (u) => u.includes('better-sqlite3') || u.includes('/adapters/sqlite/')],
  ['signing (lease tokens)', (u) => u.includes('/jose/') || u.includes('/adapters/crypto/') || u.includes('internal/crypto') || u.includes('internal/webcrypto')],
  ['logs and metrics (pino, prom-client)', (u) => u.includes('/pino') || u.includes('prom-client') || u.includes('/adapters/metrics/')],
  ['web endpoint (fastify)', (u) => u.includes('fastify') || u.includes('/adapters/http/') || u.includes('find-my-way') || u.includes('light-my-request')],
  ['NDJSON protocol and codec', (u) => u.includes('/adapters/tcp/')],
  ['socket I/O (net, streams)', (u) => /node:(net|stream|_stream|internal\/stream|internal\/streams|internal\/net|_tls|tls|internal\/tls)/.test(u) || u.includes('stream_base_commons')],
  ['promises and timers', (u) => u.includes('internal/process/task_queues') || u.includes('internal/timers') || u.includes('node:timers')],
  ['lease service, group commit, domain', (u) => u.includes('/src/app/') || u.includes('/src/domain/') || u.includes('/src/adapters/store/')],
  ['(program: V8 and native, not attributed)', (_u, f) => f === '(program)'],
  ['(root)', (_u, f) => f === '(root)'],
];

function categoryOf(node: ProfileNode): string | null {
  const { url, functionName } = node.callFrame;
  for (const [name, test] of RULES) if (test(url, functionName)) return name;
  return url === '' ? null : 'other JavaScript (node internals, libraries)';
}

const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const category = new Map<number, string>();
const walk = (id: number, inherited: string): void => {
  const node = byId.get(id)!;
  const own = categoryOf(node) ?? inherited;
  category.set(id, own);
  for (const c of node.children ?? []) walk(c, own === '(root)' ? 'other native' : own);
};
walk(profile.nodes[0]!.id, '(root)');

const self = new Map<number, number>();
for (let i = 0; i < profile.samples.length; i++) self.set(profile.samples[i]!, (self.get(profile.samples[i]!) ?? 0) + (profile.timeDeltas[i] ?? 0));
let total = 0;
const byCategory = new Map<string, number>();
const byFunction = new Map<string, number>();
for (const [id, us] of self) {
  total += us;
  const c = category.get(id)!;
  byCategory.set(c, (byCategory.get(c) ?? 0) + us);
  const f = byId.get(id)!.callFrame;
  const key = `[${c.split(' ')[0]}] ${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist)\//, '')}${f.url ? `:${f.lineNumber + 1}` : ''}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
}
const idle = byCategory.get('idle') ?? 0;
const pct = (us: number, of: number) => `${((100 * us) / of).toFixed(1).padStart(5)}%`;
console.log(`${(total / 1e6).toFixed(1)} s sampled, ${pct(idle, total)} idle; shares of all time, and of busy time:`);
for (const [c, us] of [...byCategory].sort((a, b) => b[1] - a[1])) {
  console.log(`  ${c.padEnd(44)} ${pct(us, total)}  ${c === 'idle' ? '' : pct(us, total - idle)}`);
}
console.log(`top functions by self time (of busy time):`);
for (const [f, us] of [...byFunction].filter(([f]) => !f.startsWith('[idle]')).sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) {
  console.log(`  ${pct(us, total - idle)}  ${f}`);
}
