import { FloatdError } from '../domain/errors.js';
import { formatTimeLeft, wholeDaysLeft } from '../domain/wording.js';
import type { AppContext } from './context.js';

type TlsParts = Pick<AppContext, 'tls' | 'logger' | 'clock'>;

/**
 * Re-reads the TLS certificate and key (SIGHUP, the admin API, or when the
 * files change). A bad new pair is refused and logged; the pair in use stays.
 */
export function reloadTls(ctx: TlsParts): { ok: boolean; message: string } {
  if (ctx.tls === null) return { ok: true, message: 'no TLS listener' };
  try {
    const cert = ctx.tls.reload();
    logCertificate(ctx, 'TLS certificate reloaded');
    return { ok: true, message: `TLS certificate reloaded: ${cert.subject}, expires ${new Date(cert.validTo).toISOString()}` };
  } catch (err) {
    if (!(err instanceof FloatdError)) throw err;
    ctx.logger.error({ code: err.code, setting: err.details['setting'] }, `TLS certificate reload refused, the one in use stays: ${err.message}`);
    return { ok: false, message: err.message };
  }
}

const DAY_MS = 86_400_000;

/** Logs the certificate in use, at warn when it expires within a month and at error once it has. */
export function logCertificate(ctx: TlsParts, msg: string): void {
  if (ctx.tls === null) return;
  const cert = ctx.tls.certificate();
  const info = { subject: cert.subject, issuer: cert.issuer, expires: new Date(cert.validTo).toISOString(), sha256: cert.fingerprint256 };
  ctx.logger.info(info, msg);
  const left = cert.validTo - ctx.clock.now();
  if (left <= 0) ctx.logger.error(info, 'the TLS certificate has expired: clients will refuse it; install a new one (tls.certFile) and reload');
  else if (left < 31 * DAY_MS) ctx.logger.warn({ ...info, daysLeft: wholeDaysLeft(left), timeLeft: formatTimeLeft(left) }, `the TLS certificate expires in ${formatTimeLeft(left)}: install a new one (tls.certFile) and reload`);
}
