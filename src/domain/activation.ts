import { FloatdError } from './errors.js';

/**
 * The parts of a host a binding is made of, all readable without root. Each is
 * kept only as an HMAC keyed per vendor, so raw ids never leave the host.
 * `host-identity` is the random id of container binding, kept in the data
 * directory.
 */
export const HOST_COMPONENTS = [
  'machine-id',
  'product-uuid',
  'board-serial',
  'product-serial',
  'filesystem-uuid',
  'nic-mac',
  'disk-serial',
  'cpu',
  'hostname',
  'host-identity',
] as const;
export type HostComponent = (typeof HOST_COMPONENTS)[number];

/** Components that repeat across machines (same CPU model, same host name): they count towards a binding but cannot make one alone. */
export const WEAK_COMPONENTS: readonly HostComponent[] = ['cpu', 'hostname'];

/** What the fingerprint of this host is made of: hashes of the readable parts, and why the others could not be read. */
export interface Fingerprint {
  readonly components: Readonly<Partial<Record<HostComponent, string>>>;
  readonly unreadable: ReadonlyArray<{ readonly component: HostComponent; readonly reason: string }>;
}

/** The activation terms a license key may carry (its `activation` claim). */
export interface ActivationTerms {
  readonly required: true;
  /** How many servers may hold an activation of the key at once. */
  readonly limit: number;
  /** The vendor's activation service (online activation), or null: offline only. */
  readonly url: string | null;
  /** Whether the key may be bound to a random identity kept in the data directory (containers). */
  readonly containerBinding: boolean;
}

export type BindingMatch =
  | { readonly ok: true; readonly matched: readonly HostComponent[]; readonly changed: readonly HostComponent[] }
  | { readonly ok: false; readonly matched: readonly HostComponent[]; readonly changed: readonly HostComponent[]; readonly needed: number };

/**
 * Whether the host still is the one a binding was made on. Only the
 * components the binding holds are compared (components a newer floatd reads
 * that an older activation does not hold are ignored); one of them that cannot
 * be read now counts as changed. A binding of three or more components
 * tolerates one change; a binding of fewer needs all of them. The container
 * identity (`host-identity`), when bound, must always match.
 */
export function matchBinding(bound: Readonly<Partial<Record<HostComponent, string>>>, current: Readonly<Partial<Record<HostComponent, string>>>): BindingMatch {
  const names = HOST_COMPONENTS.filter((c) => bound[c] !== undefined);
  const matched = names.filter((c) => current[c] !== undefined && current[c] === bound[c]);
  const changed = names.filter((c) => !matched.includes(c));
  const needed = Math.max(1, names.length >= 3 ? names.length - 1 : names.length);
  if (names.length > 0 && matched.length >= needed && !changed.includes('host-identity')) return { ok: true, matched, changed };
  return { ok: false, matched, changed, needed };
}

/** Why host components alone cannot make a binding (fewer than two, or only ones that repeat across machines), or null when they can. */
export function hostBindingProblem(names: readonly string[]): string | null {
  const host = names.filter((c) => c !== 'host-identity');
  if (host.length < 2) return `only ${host.length} of the host's components can be read; a binding needs two`;
  if (host.every((c) => (WEAK_COMPONENTS as readonly string[]).includes(c))) return `only ${host.join(' and ')} can be read, which repeat across machines; a binding needs one more component that identifies this machine`;
  return null;
}

/** The readable components a binding can be made with, or the reason none can. */
export function bindable(fp: Fingerprint, containerBinding: boolean): Partial<Record<HostComponent, string>> {
  const host = HOST_COMPONENTS.filter((c) => c !== 'host-identity' && fp.components[c] !== undefined);
  const problem = hostBindingProblem(host);
  if (problem === null) {
    const out: Partial<Record<HostComponent, string>> = {};
    for (const c of host) out[c] = fp.components[c]!;
    return out;
  }
  if (!containerBinding) {
    const tried = HOST_COMPONENTS.filter((c) => c !== 'host-identity').map((c) => {
      const u = fp.unreadable.find((x) => x.component === c);
      return fp.components[c] !== undefined ? `${c}: readable` : `${c}: ${u?.reason ?? 'not read'}`;
    });
    throw new FloatdError(
      'ACTIVATION_HOST_UNBOUND',
      `${problem}, and this license key does not allow container binding. Tried: ${tried.join('; ')}. ` +
        'Make two of them readable to the server (or mount the host at FLOATD_HOST_ROOT), ' +
        'or ask the vendor for a key issued with --container-binding (bound to a random identity in the data directory)',
    );
  }
  const identity = fp.components['host-identity'];
  if (identity === undefined) throw new FloatdError('ACTIVATION_HOST_UNBOUND', 'container binding needs the data directory\'s host identity (DATA/host-identity), which could not be made');
  // Components that repeat across machines add nothing to the container's identity, only ways to break it.
  const out: Partial<Record<HostComponent, string>> = { 'host-identity': identity };
  for (const c of host) if (!WEAK_COMPONENTS.includes(c)) out[c] = fp.components[c]!;
  return out;
}

/** Parses the `activation` claim of a license key; throws naming the bad field. */
export function parseActivationClaim(value: unknown): ActivationTerms | null {
  if (value === undefined || value === null) return null;
  const bad = (why: string) => new FloatdError('LICENSE_KEY_BAD_CLAIMS', `license key claim "activation" ${why}`, { field: 'activation' });
  if (typeof value !== 'object' || Array.isArray(value)) throw bad('must be an object');
  const v = value as Record<string, unknown>;
  if (v['required'] !== true) throw bad('must have "required": true');
  const limit = v['limit'];
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > 100_000) throw bad('"limit" must be a whole number from 1 to 100000');
  const url = v['url'] ?? null;
  if (url !== null && (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/i.test(url))) throw bad('"url" must be an http(s) URL');
  const container = v['containerBinding'] ?? false;
  if (typeof container !== 'boolean') throw bad('"containerBinding" must be true or false');
  return { required: true, limit, url, containerBinding: container };
}

/** Clocks may differ by this much between a server and its vendor. */
export const MAX_CLOCK_SKEW_MS = 5 * 60_000;

/** "7 min 3 s ahead of", "2 h 5 min behind", for clock-skew messages. */
export function describeSkew(skewMs: number): string {
  const abs = Math.abs(skewMs);
  const s = Math.round(abs / 1000);
  const text =
    s >= 86_400 ? `${Math.floor(s / 86_400)} d ${Math.floor((s % 86_400) / 3600)} h` : s >= 3600 ? `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min` : `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${text} ${skewMs > 0 ? 'ahead of' : 'behind'}`;
}

/** The verified content of a vendor-signed activation. Times are epoch ms. */
export interface Activation {
  readonly id: string;
  readonly keyId: string;
  /** The thumbprint of the server key the activation names. */
  readonly serverKid: string;
  readonly binding: Readonly<Partial<Record<HostComponent, string>>>;
  readonly container: boolean;
  readonly issuedAt: number;
  /** The request it answers. */
  readonly nonce: string;
}

/** How a stored activation stands against this host and server at a moment. */
export type ActivationState =
  | { readonly state: 'active'; readonly changed: readonly HostComponent[]; readonly graceUntil: number | null }
  | { readonly state: 'not-activated' | 'deactivated' | 'hardware-changed' | 'invalid' | 'revalidation-overdue'; readonly message: string; readonly changed?: readonly HostComponent[] };
