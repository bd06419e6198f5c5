import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { FloatdError, type ErrorCode } from '../domain/errors.js';
import type { AsyncReportEventSource, ReportEventSource } from '../domain/events.js';
import { usageReport, usageReportAsync, usersReport, usersReportAsync, type ReportQuery, type UsageReport, type UsersReport } from './reports.js';

export type ReportJob =
  | { readonly dbFile: string; readonly kind: 'usage'; readonly query: ReportQuery }
  | { readonly dbFile: string; readonly kind: 'users'; readonly query: Omit<ReportQuery, 'by'> & { readonly top?: number } };

/** Where a running server's reports read from: its SQLite file (in a worker), or its cluster's database. */
export type ReportSource = ReportEventSource | (AsyncReportEventSource & { readonly kind: 'postgres' });

const WORKER = fileURLToPath(new URL('./report-worker.js', import.meta.url));

/**
 * Runs a report for the running server: in a worker thread with its own
 * read-only connection, so a report over millions of entries never holds up
 * leases. (Where the compiled worker is absent, as when running from the
 * TypeScript sources, on the given store instead.)
 */
export function runReport(job: Extract<ReportJob, { kind: 'usage' }>, store: ReportSource): Promise<UsageReport>;
export function runReport(job: Extract<ReportJob, { kind: 'users' }>, store: ReportSource): Promise<UsersReport>;
export function runReport(job: ReportJob, store: ReportSource): Promise<UsageReport | UsersReport> {
  // A cluster's lease log comes a page at a time from its database: the server's event loop goes on between pages.
  if (typeof store === 'object' && store !== null && 'kind' in store && store.kind === 'postgres') return job.kind === 'usage' ? usageReportAsync(store, job.query) : usersReportAsync(store, job.query);
  if (!existsSync(WORKER)) {
    try {
      const source = store as ReportEventSource;
      return Promise.resolve(job.kind === 'usage' ? usageReport(source, job.query) : usersReport(source, job.query));
    } catch (err) {
      return Promise.reject(err);
    }
  }
  return new Promise((resolve, reject) => {
    const worker = new Worker(WORKER, { workerData: job });
    let settled = false;
    worker.once('message', (m: { ok: true; report: UsageReport | UsersReport } | { ok: false; code: ErrorCode; message: string }) => {
      settled = true;
      if (m.ok) resolve(m.report);
      else reject(new FloatdError(m.code, m.message));
    });
    worker.once('error', (err) => {
      settled = true;
      reject(err);
    });
    worker.once('exit', (code) => {
      if (!settled) reject(new FloatdError('INTERNAL', `the report worker ended (exit code ${code}) without an answer`));
    });
  });
}
