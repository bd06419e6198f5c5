import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { PublicStatus } from '../app/public-status.js';
import type { ServerStatus } from '../app/status.js';
import { FloatdError, type ErrorCode } from '../domain/errors.js';
import { table } from './common.js';

/** What a server tells a caller without an admin credential, said once under the reduced view. */
export const REDUCED_VIEW_NOTE =
  'reduced view: key ids, licensee, listeners and activation need an admin credential: ' +
  'floatd status --server http(s)://HOST:PORT --token-file FILE (the admin API), or floatd status on the server\'s own machine';

export function isPublicStatus(s: ServerStatus | PublicStatus): s is PublicStatus {
  return (s as { view?: unknown }).view === 'public';
}

/** `GET /v1/status` of a web endpoint: everything with an admin token, else the reduced view. */
export function webStatus(url: string, tokenFile: string | undefined, caFile: string | undefined): Promise<ServerStatus | PublicStatus> {
  const read = (file: string, what: string) => {
    try {
      return readFileSync(file, 'utf8');
    } catch (err) {
      throw new FloatdError('INPUT_INVALID', `cannot read the ${what} ${file}: ${(err as Error).message}`);
    }
  };
  const token = tokenFile === undefined ? undefined : read(tokenFile, 'admin token file').trim();
  const ca = caFile === undefined ? undefined : read(caFile, 'CA file');
  const target = new URL('/v1/status', url);
  const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(target, { method: 'GET', ...(ca !== undefined ? { ca } : {}), headers: token === undefined ? {} : { authorization: `Bearer ${token}` }, timeout: 10_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => {
        let body: Record<string, unknown>;
        try {
          body = JSON.parse(text) as Record<string, unknown>;
        } catch {
          reject(new FloatdError('SERVER_UNREACHABLE', `${url} answered ${res.statusCode} without floatd's JSON: is it a floatd web endpoint?`));
          return;
        }
        if (body['ok'] !== true) {
          const error = body['error'] as { code?: string; message?: string } | undefined;
          reject(new FloatdError((error?.code ?? 'SERVER_UNREACHABLE') as ErrorCode, `${url}: ${error?.message ?? `answered ${res.statusCode}`}`));
          return;
        }
        const { ok: _ok, view, ...status } = body;
        resolve((view === 'public' ? { view, ...status } : status) as unknown as ServerStatus | PublicStatus);
      });
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err) => reject(new FloatdError('SERVER_UNREACHABLE', `cannot reach ${url}: ${err.message}`)));
    req.end();
  });
}

export function formatPublicStatus(s: PublicStatus): string {
  const lines = [`floatd ${s.version} (server running${s.ready ? '' : `, not granting: ${s.reason}`})`, `mode: ${s.mode}`, '', 'seats:'];
  lines.push(
    s.products.length === 0
      ? '  (no pools)'
      : table(s.products.map((p) => [p.product, String(p.seatsTotal), String(p.seatsGrantable), String(p.seatsInUse), String(p.seatsFree)]), ['PRODUCT', 'TOTAL', 'GRANTABLE', 'IN USE', 'FREE']),
  );
  lines.push('', `leases held: ${s.leasesHeld}`, '', REDUCED_VIEW_NOTE);
  return lines.join('\n');
}
