import { createHmac, timingSafeEqual } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { matchBinding, type HostComponent } from '../../domain/activation.js';
import { hostFingerprint } from '../host/fingerprint.js';

/** What the evaluation record keeps about this host's evaluation. */
export interface EvaluationRecordData {
  /** When the evaluation started on this host. */
  readonly startedAt: number;
  /** When it ends under the terms last in force (extension keys and lower settings move it). */
  readonly endsAt: number;
  /** The latest wall-clock time a server evaluating on this host has seen. */
  readonly highWater: number;
  /** Why evaluation ended for good (a license key was installed), or null. */
  readonly keyInstalled: string | null;
}

export type EvaluationRecordRead =
  | { readonly state: 'absent' }
  | { readonly state: 'valid'; readonly data: EvaluationRecordData; readonly changed: readonly HostComponent[] }
  /** Made on another host (or on this one before two of its components changed). */
  | { readonly state: 'foreign'; readonly why: string }
  /** Edited by hand, or not a record at all. */
  | { readonly state: 'altered'; readonly why: string }
  /** Could not be read (permissions). */
  | { readonly state: 'unreadable'; readonly why: string };

export const EVALUATION_RECORD_FILE = 'evaluation.json';

/** Components of the data directory, not the host: a new data directory must not look like a new host. */
const NOT_HOST: ReadonlySet<HostComponent> = new Set<HostComponent>(['filesystem-uuid', 'host-identity']);
const UNBOUND = 'unbound';

function hostParts(root: string, dataDir: string, purpose: string): Partial<Record<HostComponent, string>> {
  const fp = hostFingerprint(root, dataDir, purpose);
  const out: Partial<Record<HostComponent, string>> = {};
  for (const [c, v] of Object.entries(fp.components) as Array<[HostComponent, string]>) if (!NOT_HOST.has(c)) out[c] = v;
  return out;
}

function canonical(data: EvaluationRecordData, host: Readonly<Record<string, string>>): string {
  const sorted = Object.fromEntries(Object.entries(host).sort(([a], [b]) => a.localeCompare(b)));
  return JSON.stringify({ startedAt: data.startedAt, endsAt: data.endsAt, highWater: data.highWater, keyInstalled: data.keyInstalled, host: sorted });
}

function seal(key: string, text: string): string {
  return createHmac('sha256', `floatd-evaluation-seal:${key}`).update(text).digest('base64url');
}

function sameSeal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

const iso = (t: number) => new Date(t).toISOString();

function time(v: unknown): number | null {
  if (typeof v !== 'string') return null;
  const t = Date.parse(v);
  return Number.isFinite(t) ? t : null;
}

/**
 * The evaluation record: one JSON file per host (per record folder), outside
 * every data directory, bound to the host's machine id and DMI UUID (as
 * hashes) and sealed with each of them, so an edit by hand or a copy from
 * another host is noticed. It is tamper-evident, not tamper-proof: whoever
 * reads floatd's source and this host's ids can recompute the seal.
 */
export class EvaluationRecordFile {
  readonly file: string;
  private parts: { bound: Partial<Record<HostComponent, string>>; seals: Partial<Record<HostComponent, string>> } | null = null;

  constructor(
    readonly dir: string,
    private readonly hostRoot: string,
  ) {
    this.file = join(dir, EVALUATION_RECORD_FILE);
  }

  private host(): { bound: Partial<Record<HostComponent, string>>; seals: Partial<Record<HostComponent, string>> } {
    // Only host components count: the data directory's filesystem and identity are left out, so they are
    // looked for in a folder that does not exist (which costs nothing) rather than in a data directory.
    const none = join(this.dir, 'no-data-directory');
    this.parts ??= { bound: hostParts(this.hostRoot, none, 'floatd-evaluation'), seals: hostParts(this.hostRoot, none, 'floatd-evaluation-seal') };
    return this.parts;
  }

  read(): EvaluationRecordRead {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { state: 'absent' };
      return { state: 'unreadable', why: code === 'EACCES' || code === 'EPERM' ? 'permission denied' : (err as Error).message };
    }
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(text) as Record<string, unknown>;
    } catch {
      return { state: 'altered', why: 'it is not JSON' };
    }
    const startedAt = time(doc['startedAt']);
    const endsAt = time(doc['endsAt']);
    const highWater = time(doc['highWater']);
    const keyInstalled = doc['keyInstalled'];
    const bound = doc['host'];
    const seals = doc['seals'];
    if (
      doc['floatd'] !== 'evaluation' || startedAt === null || endsAt === null || highWater === null ||
      !(keyInstalled === null || typeof keyInstalled === 'string') ||
      typeof bound !== 'object' || bound === null || typeof seals !== 'object' || seals === null
    ) {
      return { state: 'altered', why: 'it is not a floatd evaluation record' };
    }
    const data: EvaluationRecordData = { startedAt, endsAt, highWater, keyInstalled: keyInstalled as string | null };
    const boundHost = bound as Record<string, string>;
    const sealOf = seals as Record<string, unknown>;
    const body = canonical(data, boundHost);
    const current = this.host();
    if (Object.keys(boundHost).length === 0) {
      // Made where no host component could be read: sealed with a constant, evident only against edits by hand.
      return typeof sealOf[UNBOUND] === 'string' && sameSeal(sealOf[UNBOUND], seal(UNBOUND, body)) ? { state: 'valid', data, changed: [] } : { state: 'altered', why: 'its seal does not match its content' };
    }
    const match = matchBinding(boundHost as Partial<Record<HostComponent, string>>, current.bound);
    if (!match.ok) return { state: 'foreign', why: `it was made on another host (matching host components: ${match.matched.length === 0 ? 'none' : match.matched.join(', ')})` };
    for (const c of match.matched) {
      const s = sealOf[c];
      if (typeof s !== 'string' || !sameSeal(s, seal(current.seals[c]!, body))) return { state: 'altered', why: 'its seal does not match its content: it was edited' };
    }
    return { state: 'valid', data, changed: match.changed };
  }

  /** Writes the record (a temporary file renamed into place, mode 0600 in a 0700 folder). */
  write(data: EvaluationRecordData): void {
    const { bound, seals } = this.host();
    const body = canonical(data, bound as Record<string, string>);
    const sealed: Record<string, string> = {};
    if (Object.keys(bound).length === 0) sealed[UNBOUND] = seal(UNBOUND, body);
    for (const c of Object.keys(bound) as HostComponent[]) sealed[c] = seal(seals[c]!, body);
    const doc = {
      floatd: 'evaluation',
      about: 'The evaluation of floatd on this host, kept apart from any data directory so a new one continues it. Editing this file ends the evaluation.',
      startedAt: iso(data.startedAt),
      endsAt: iso(data.endsAt),
      highWater: iso(data.highWater),
      keyInstalled: data.keyInstalled,
      host: bound,
      seals: sealed,
    };
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const temp = `${this.file}.${process.pid}.new`;
    try {
      writeFileSync(temp, `${JSON.stringify(doc, null, 2)}\n`, { mode: 0o600 });
      renameSync(temp, this.file);
    } catch (err) {
      rmSync(temp, { force: true });
      throw err;
    }
  }
}
