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
  const udev = readText(under(root, `/run/udev/data/b${dev}`));
  if ('text' in udev) {
    const m = /^E:ID_FS_UUID=(.+)$/m.exec(udev.text);
    if (m) return { value: m[1]!.trim().toLowerCase() };
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

type Read = { value: string } | { reason: string };

/** A file's trimmed text, or why it cannot be read. */
function readText(file: string): { text: string } | { reason: string } {
  try {
    return { text: readFileSync(file, 'utf8').trim() };
  } catch (err) {
    return { reason: `${file}: ${why(err)}` };
  }
}

/** Serial numbers firmware fills in when it has none. */
const PLACEHOLDER_SERIAL = /^(|0+|none|n\/a|na|not specified|not applicable|to be filled by o\.?e\.?m\.?|default string|system serial number|chassis serial number|base board serial number|serial|0123456789|123456789|x+|unknown)$/i;

/** A DMI serial (board or product): readable only where the firmware's files are not root-only. */
function readSerial(file: string): Read {
  const r = readText(file);
  if ('reason' in r) return r;
  if (PLACEHOLDER_SERIAL.test(r.text)) return { reason: `${file} holds no serial (${JSON.stringify(r.text)})` };
  return { value: r.text };
}

/** The sorted permanent MAC addresses of physical NICs: devices with a `device` link whose address was not assigned at random or set. */
function nicAddresses(root: string): Read {
  const dir = under(root, '/sys/class/net');
  let names: string[];
  try {
    names = readdirSync(dir).sort();
  } catch (err) {
    return { reason: `${dir}: ${why(err)}` };
  }
  const macs = new Set<string>();
  const skipped: string[] = [];
  for (const name of names) {
    const nic = join(dir, name);
    if (!existsSync(join(nic, 'device'))) {
      skipped.push(`${name} (virtual)`);
      continue;
    }
    const type = readText(join(nic, 'addr_assign_type'));
    if ('text' in type && type.text !== '0') {
      skipped.push(`${name} (address not permanent: addr_assign_type ${type.text})`);
      continue;
    }
    const address = readText(join(nic, 'address'));
    if ('reason' in address || !/^[0-9a-f]{2}(:[0-9a-f]{2}){5,}$/i.test(address.text) || /^[0:]+$/.test(address.text)) {
      skipped.push(`${name} (no usable address)`);
      continue;
    }
    macs.add(address.text.toLowerCase());
  }
  if (macs.size === 0) return { reason: `no physical NIC with a permanent address in ${dir}${skipped.length > 0 ? ` (${skipped.join(', ')})` : ''}` };
  return { value: [...macs].sort().join(',') };
}

/** The mount of `/` in mountinfo: its device number and source. */
function rootMount(root: string): { dev: string; source: string } | null {
  let found: { dev: string; source: string } | null = null;
  try {
    for (const line of readFileSync(under(root, '/proc/self/mountinfo'), 'utf8').split('\n')) {
      const fields = line.split(' ');
      const dash = fields.indexOf('-');
      // The last mount of / is the one in force.
      if (fields[4] === '/' && dash > 0) found = { dev: fields[2] ?? '', source: fields[dash + 2] ?? '' };
    }
  } catch {
    return null;
  }
  return found;
}

/** The whole disk (a /sys/block entry) a block device name is, or is a partition of; device-mapper and RAID devices lead to their first member. */
function diskOf(root: string, name: string, depth = 0): string | null {
  const block = under(root, '/sys/block');
  let disk: string | null = null;
  if (existsSync(join(block, name))) disk = name;
  else {
    try {
      disk = readdirSync(block).find((d) => existsSync(join(block, d, name))) ?? null;
    } catch {
      return null;
    }
  }
  if (disk === null) return null;
  if (depth < 4) {
    try {
      const slaves = readdirSync(join(block, disk, 'slaves')).sort();
      if (slaves.length > 0) return diskOf(root, slaves[0]!, depth + 1);
    } catch {
      // A plain disk has no members.
    }
  }
  return disk;
}

/** The serial number of the disk holding `/`, from /sys/block/DISK/serial or DISK/device/serial. */
function rootDiskSerial(root: string): Read {
  const mount = rootMount(root);
  if (mount === null) return { reason: `no mount of / in ${under(root, '/proc/self/mountinfo')}` };
  const names: string[] = [];
  if (mount.source.startsWith('/dev/')) {
    try {
      names.push(basename(realpathSync(under(root, mount.source))));
    } catch {
      names.push(basename(mount.source));
    }
  }
  try {
    names.push(basename(realpathSync(under(root, `/sys/dev/block/${mount.dev}`))));
  } catch {
    // Not every host has /sys/dev/block (containers, test roots).
  }
  const disk = names.map((n) => diskOf(root, n)).find((d) => d !== null) ?? null;
  if (disk === null) return { reason: `/ is on ${mount.source || mount.dev}, which is no disk in ${under(root, '/sys/block')}` };
  const tried: string[] = [];
  for (const file of [join(under(root, '/sys/block'), disk, 'serial'), join(under(root, '/sys/block'), disk, 'device/serial')]) {
    const r = readSerial(file);
    if ('value' in r) return r;
    tried.push(r.reason);
  }
  return { reason: `the disk of / (${disk}) shows no serial: ${tried.join('; ')}` };
}

/** The CPU model and the number of logical CPUs, from /proc/cpuinfo. */
function cpu(root: string): Read {
  const file = under(root, '/proc/cpuinfo');
  const r = readText(file);
  if ('reason' in r) return r;
  let count = 0;
  const fields = new Map<string, string>();
  for (const line of r.text.split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name === 'processor' && /^\d+$/.test(value)) count++;
    if (value !== '' && !fields.has(name)) fields.set(name, value);
  }
  const arm = fields.has('cpu implementer') ? `${fields.get('cpu implementer')}/${fields.get('cpu part') ?? '?'}` : undefined;
  const model = fields.get('model name') ?? fields.get('hardware') ?? fields.get('cpu model') ?? fields.get('cpu') ?? arm;
  if (count === 0 || model === undefined) return { reason: `${file} names no CPU model and count` };
  return { value: `${model.replace(/\s+/g, ' ')} x${count}` };
}

/** The host name, from the kernel (/proc/sys/kernel/hostname), else /etc/hostname. */
function hostName(root: string): Read {
  const reasons: string[] = [];
  for (const file of [under(root, '/proc/sys/kernel/hostname'), under(root, '/etc/hostname')]) {
    const r = readText(file);
    if ('reason' in r) {
      reasons.push(r.reason);
      continue;
    }
    const name = r.text.toLowerCase();
    if (name === '' || name === 'localhost' || name === 'localhost.localdomain' || name === '(none)') {
      reasons.push(`${file} holds no usable host name (${JSON.stringify(r.text)})`);
      continue;
    }
    return { value: name };
  }
  return { reason: reasons.join('; ') };
}

/** Reads the host's components under `root` (FLOATD_HOST_ROOT, / by default) and the data directory's host identity, if made. */
export function readHostComponents(root: string, dataDir: string): RawComponents {
  const values: Partial<Record<HostComponent, string>> = {};
  const unreadable: RawComponents['unreadable'] = [];
  const note = (component: HostComponent, r: Read) => {
    if ('value' in r) values[component] = r.value;
    else unreadable.push({ component, reason: r.reason });
  };
  const etc = readId(under(root, '/etc/machine-id'));
  note('machine-id', 'value' in etc ? etc : (() => {
    const dbus = readId(under(root, '/var/lib/dbus/machine-id'));
    return 'value' in dbus ? dbus : { reason: `${etc.reason}, and ${dbus.reason}` };
  })());
  note('product-uuid', readId(under(root, '/sys/class/dmi/id/product_uuid')));
  note('board-serial', readSerial(under(root, '/sys/class/dmi/id/board_serial')));
  note('product-serial', readSerial(under(root, '/sys/class/dmi/id/product_serial')));
  note('filesystem-uuid', filesystemUuid(root, dataDir));
  note('nic-mac', nicAddresses(root));
  note('disk-serial', rootDiskSerial(root));
  note('cpu', cpu(root));
  note('hostname', hostName(root));
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
