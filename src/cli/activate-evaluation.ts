import type { Config } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import { withEvaluationRegistrar, type EvaluationRegistered } from '../app/evaluation-registration.js';
import type { Io } from './common.js';

function said(r: EvaluationRegistered, how: string): string {
  return `the evaluation is registered with the vendor (${how}, evaluation ${r.id}): it runs from ${new Date(r.startedAt).toISOString()} to ${new Date(r.endsAt).toISOString()}; a running server grants from it within seconds`;
}

/** floatd activate --evaluation: online, or --offline-request FILE, or --offline-response FILE. */
export async function activateEvaluation(
  config: Config,
  clock: Clock,
  o: { proxy: string | null; request: string | undefined; response: string | undefined },
  io: Io,
  read: (file: string) => string,
  write: (file: string, text: string) => void,
): Promise<number> {
  if (o.request !== undefined && o.response !== undefined) throw new FloatdError('USAGE', 'activate --evaluation takes --offline-request FILE or --offline-response FILE, not both');
  if (o.response !== undefined) {
    const text = read(o.response);
    const r = await withEvaluationRegistrar(config, clock, (reg) => reg.installResponse(text));
    io.out(said(r, 'offline'));
    return 0;
  }
  if (o.request !== undefined) {
    const file = o.request;
    const text = await withEvaluationRegistrar(config, clock, (reg) => reg.offlineRequest());
    write(file, text);
    if (file !== '-') io.out(`wrote the evaluation registration request to ${file}: send it to the vendor, then install the response with floatd activate --evaluation --offline-response FILE`);
    return 0;
  }
  const r = await withEvaluationRegistrar(config, clock, (reg) => reg.registerOnline(o.proxy));
  io.out(said(r, 'online'));
  return 0;
}
