import { parentPort, workerData } from 'node:worker_threads';
import { SqliteLeaseStore } from '../adapters/sqlite/sqlite-lease-store.js';
import { FloatdError } from '../domain/errors.js';
import { usageReport, usersReport } from './reports.js';
import type { ReportJob } from './report-runner.js';

/** Computes one report on its own read-only connection, off the server's event loop. */
const job = workerData as ReportJob;
const store = new SqliteLeaseStore(job.dbFile, { readonly: true });
try {
  const report = job.kind === 'usage' ? usageReport(store, job.query) : usersReport(store, job.query);
  parentPort!.postMessage({ ok: true, report });
} catch (err) {
  parentPort!.postMessage({ ok: false, code: err instanceof FloatdError ? err.code : 'INTERNAL', message: (err as Error).message });
} finally {
  store.close();
}
