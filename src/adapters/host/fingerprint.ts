import { execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import type { Fingerprint, HostComponent } from '../../domain/activation.js';

/** The raw values of a host's components, before hashing: they never leave this module but as HMACs. */
interface RawComponents {
  readonly values: Partial<Record<HostComponent, string>>;
  readonly unreadable: Array<{ component: HostComponent; reason: string }>;
}

export const HOST_IDENTITY_FILE = 'host-identity';

function under(root: string, path: string): string {
  return join(root, path);
}

function why(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'no such file';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  return (err as Error).message;
}

/** A machine id or UUID file: its trimmed content, if it holds one. */
function readId(file: string): { value: string } | { reason: string } {
  try {
    const text = readFileSync(file, 'utf8').trim().toLowerCase();
    if (text === '' || /^[0-]+$/.test(text) || /^[f-]+$/.test(text)) return { reason: `${file} holds no usable id` };
    return { value: text };
  } catch (err) {
    return { reason: `${file}: ${why(err)}` };
  }
}

/** Linux's encoding of a device number into major and minor. */
export function majorMinor(dev: number): string {
  const big = BigInt(dev);
  const major = Number(((big >> 8n) & 0xfffn) | ((big >> 32n) & ~0xfffn));
  const minor = Number((big & 0xffn) | ((big >> 12n) & ~0xffn));
  return `${major}:${minor}`;
}

const NO_UUID_FILESYSTEMS = new Set(['overlay', 'tmpfs', 'aufs', 'fuse-overlayfs', 'ramfs', 'proc', 'sysfs', 'nfs', 'nfs4', '9p', 'virtiofs', 'cifs']);

/**
 * The UUID of the filesystem holding `dir`, found without root: the mount of
 * the directory's device in /proc/self/mountinfo gives the device, whose
 * /dev/disk/by-uuid link gives the UUID (all under the host root). When the
 * host root is / and udev made no links, findmnt is asked.
 */
function filesystemUuid(root: string, dir: string): { value: string } | { reason: string } {
  let dev: string;
  try {
    dev = majorMinor(statSync(dir).dev);
  } catch (err) {
    return { reason: `${dir}: ${why(err)}` };
  }
  const names = new Set<string>();
  let fstype: string | null = null;
  try {
    for (const line of readFileSync(under(root, '/proc/self/mountinfo'), 'utf8').split('\n')) {
      const fields = line.split(' ');
      if (fields[2] !== dev) continue;
      const dash = fields.indexOf('-');
      if (dash < 0) continue;
      fstype = fields[dash + 1] ?? null;
      const source = fields[dash + 2] ?? '';
      if (source.startsWith('/dev/')) names.add(basename(source));
      break;
    }
  } catch {
    // No mountinfo under the host root: the device links below may still name it.
  }
  try {
    names.add(basename(realpathSync(under(root, `/sys/dev/block/${dev}`))));
  } catch {
    // Not every host has /sys/dev/block (containers, test roots).
  }
  const byUuid = under(root, '/dev/disk/by-uuid');
  if (names.size > 0 && existsSync(byUuid)) {
    try {
      for (const uuid of readdirSync(byUuid)) {
        try {
          if (names.has(basename(readlinkSync(join(byUuid, uuid))))) return { value: uuid.toLowerCase() };
        } catch {
          // A link that cannot be read is not ours.
        }
      }
    } catch (err) {
      return { reason: `${byUuid}: ${why(err)}` };
    }
  }
  if (root === '/' || root === '') {
    try {
      const uuid = execFileSync('findmnt', ['-n', '-o', 'UUID', '-T', dir], { encoding: 'utf8', timeout: 3000, stdio: ['ignore', 'pipe', 'ignore'] }).trim();
      if (uuid !== '') return { value: uuid.toLowerCase() };
    } catch {
      // findmnt missing or silent: reported below.
    }
  }
  if (fstype !== null && NO_UUID_FILESYSTEMS.has(fstype)) {
    return { reason: `the data directory is on a ${fstype} filesystem (device ${dev}), which has no filesystem UUID` };
  }
  return { reason: `no filesystem UUID found for device ${dev}${names.size > 0 ? ` (${[...names].join(', ')})` : ''} in ${byUuid}` };
}

/** Reads the host's components under `root` (FLOATD_HOST_ROOT, / by default) and the data directory's host identity, if made. */
export function readHostComponents(root: string, dataDir: string): RawComponents {
  const values: Partial<Record<HostComponent, string>> = {};
  const unreadable: RawComponents['unreadable'] = [];
  const note = (component: HostComponent, r: { value: string } | { reason: string }) => {
    if ('value' in r) values[component] = r.value;
    else unreadable.push({ component, reason: r.reason });
  };
  const etc = readId(under(root, '/etc/machine-id'));
  note('machine-id', 'value' in etc ? etc : (() => {
    const dbus = readId(under(root, '/var/lib/dbus/machine-id'));
    return 'value' in dbus ? dbus : { reason: `${etc.reason}; ${dbus.reason}` };
  })());
  note('product-uuid', readId(under(root, '/sys/class/dmi/id/product_uuid')));
  note('filesystem-uuid', filesystemUuid(root, dataDir));
  const identity = join(dataDir, HOST_IDENTITY_FILE);
  if (existsSync(identity)) note('host-identity', readId(identity));
  return { values, unreadable };
}

/** Makes DATA/host-identity (a random id for container binding) unless it exists; returns whether it was made. */
export function ensureHostIdentity(dataDir: string): boolean {
  const file = join(dataDir, HOST_IDENTITY_FILE);
  if (existsSync(file)) return false;
  writeFileSync(file, `${randomBytes(16).toString('hex')}\n`, { mode: 0o600, flag: 'wx' });
  return true;
}

/**
 * The fingerprint of this host for one vendor: each component as
 * HMAC-SHA256 keyed with the vendor's key id, so two vendors see unrelated
 * values and none sees the raw ids.
 */
export function hostFingerprint(root: string, dataDir: string, vendorKid: string): Fingerprint {
  const raw = readHostComponents(root, dataDir);
  const components: Partial<Record<HostComponent, string>> = {};
  for (const [name, value] of Object.entries(raw.values) as Array<[HostComponent, string]>) {
    components[name] = createHmac('sha256', `floatd-fingerprint:${vendorKid}`).update(`${name}:${value}`).digest('base64url');
  }
  return { components, unreadable: raw.unreadable };
}
