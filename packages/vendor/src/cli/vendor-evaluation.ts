import type { JWK } from 'jose';
import type { Clock } from '../../../../src/domain/clock.js';
import { FloatdError } from '../../../../src/domain/errors.js';
import { VendorStore } from '../store/vendor-store.js';
import { parse, table, type Io } from '../../../../src/adapters/console/command-line.js';
import { evaluationRequestOfFile, evaluationResponseFile, VendorEvaluations, type EvaluationGranted } from '../app/vendor-evaluations.js';

/** --evaluation-activation required [--activation-url URL] of vendor product. */
export function evaluationActivationFlags(claim: string | undefined, url: string | undefined): { url: string | null } | null {
  if (claim === undefined) {
    if (url !== undefined) throw new FloatdError('USAGE', '--activation-url goes with --evaluation-activation required');
    return null;
  }
  if (claim !== 'required') throw new FloatdError('USAGE', `--evaluation-activation takes "required"; got "${claim}"`);
  if (url !== undefined && !/^https?:\/\/[^\s]+$/i.test(url)) throw new FloatdError('USAGE', `--activation-url must be an http(s) URL; got "${url}"`);
  return { url: url ?? null };
}

/** Answers an offline evaluation request file, or null when the file is not one (an activation request). */
export async function respondToEvaluation(store: VendorStore, clock: Clock, privateJwk: JWK, text: string): Promise<{ granted: EvaluationGranted; file: string } | null> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof parsed !== 'object' || parsed === null || (parsed as Record<string, unknown>)['floatd'] !== 'evaluation-request') return null;
  const request = await evaluationRequestOfFile(parsed as Record<string, unknown>);
  const granted = await new VendorEvaluations(store, clock, privateJwk).register(request, 'offline', null);
  return { granted, file: evaluationResponseFile(granted, clock.now()) };
}

/** floatd-vendor evaluations list --data-dir VDIR [--json]: every evaluation registered, by host. */
export function vendorEvaluationsList(args: string[], io: Io): number {
  const [sub, ...rest] = args;
  if (sub !== 'list') throw new FloatdError('USAGE', `vendor evaluations: unknown subcommand "${sub ?? ''}" (floatd-vendor evaluations list --data-dir VDIR [--json])`);
  const { values } = parse(rest, { 'data-dir': { type: 'string' }, json: { type: 'boolean' } });
  if (values['data-dir'] === undefined) throw new FloatdError('USAGE', 'vendor evaluations list needs --data-dir VDIR');
  const store = VendorStore.open(values['data-dir']);
  try {
    const now = Date.now();
    const rows = store.evaluations(null).map((e) => ({
      evaluation: e.id,
      products: e.products.split(','),
      state: e.endsAt > now ? 'running' : 'ended',
      via: e.via,
      serverKey: e.serverKid,
      components: Object.keys(e.binding),
      startedAt: new Date(e.startedAt).toISOString(),
      endsAt: new Date(e.endsAt).toISOString(),
      lastSeenAt: new Date(e.lastSeenAt).toISOString(),
    }));
    if (values.json) io.out(JSON.stringify(rows, null, 2));
    else if (rows.length === 0) io.out('no evaluations registered');
    else io.out(table(rows.map((r) => [r.evaluation, r.products.join(','), r.state, r.via, r.serverKey.slice(0, 16), r.startedAt, r.endsAt, r.lastSeenAt, r.components.join(',')]), ['EVALUATION', 'PRODUCTS', 'STATE', 'VIA', 'SERVER KEY', 'STARTED', 'ENDS', 'LAST SEEN', 'BOUND TO']));
    return 0;
  } finally {
    store.close();
  }
}
