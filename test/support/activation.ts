import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { majorMinor } from '../../src/adapters/host/fingerprint.js';
import { VendorStore } from '../../packages/vendor/src/store/vendor-store.js';
import { tempDir } from './helpers.js';
import type { Vendor } from './server.js';

/** A host root for FLOATD_HOST_ROOT: machine id, DMI product UUID, and the data directory's filesystem UUID, each changeable. */
export interface FakeHost {
  readonly root: string;
  setMachineId(id: string | null): void;
  setProductUuid(uuid: string | null): void;
  setFilesystemUuid(uuid: string | null): void;
  /** /proc/sys/kernel/hostname. */
  setHostname(name: string | null): void;
  /** /proc/cpuinfo with `count` processors of `model`. */
  setCpu(model: string | null, count?: number): void;
  /** /sys/class/net/NAME: a physical NIC (a `device` link) unless `virtual`, with addr_assign_type 0 unless `assignType` says otherwise. */
  setNic(name: string, mac: string | null, opts?: { virtual?: boolean; assignType?: number }): void;
  /** /sys/class/dmi/id/board_serial and product_serial. */
  setSerials(board: string | null, product: string | null): void;
  /** The disk holding / (vda, / on vda1 in mountinfo) and its /sys/block/vda/serial. */
  setRootDiskSerial(serial: string | null): void;
}

export function fakeHost(dataDir: string): FakeHost {
  const root = tempDir('floatd-host-');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'sys/class/dmi/id'), { recursive: true });
  mkdirSync(join(root, 'proc/self'), { recursive: true });
  mkdirSync(join(root, 'dev/disk/by-uuid'), { recursive: true });
  mkdirSync(dataDir, { recursive: true });
  // The data directory's filesystem, and / on vda1 (a disk serial is found only once setRootDiskSerial made /sys/block/vda).
  writeFileSync(
    join(root, 'proc/self/mountinfo'),
    `24 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw\n25 1 ${majorMinor(statSync(dataDir).dev)} / /data rw,relatime shared:2 - ext4 /dev/fakedisk1 rw\n`,
  );
  let fsUuid: string | null = null;
  const host: FakeHost = {
    root,
    setMachineId(id) {
      rmSync(join(root, 'etc/machine-id'), { force: true });
      if (id !== null) writeFileSync(join(root, 'etc/machine-id'), `${id}\n`);
    },
    setProductUuid(uuid) {
      rmSync(join(root, 'sys/class/dmi/id/product_uuid'), { force: true });
      if (uuid !== null) writeFileSync(join(root, 'sys/class/dmi/id/product_uuid'), `${uuid}\n`);
    },
    setFilesystemUuid(uuid) {
      if (fsUuid !== null) rmSync(join(root, 'dev/disk/by-uuid', fsUuid), { force: true });
      fsUuid = uuid;
      if (uuid !== null) symlinkSync('../../fakedisk1', join(root, 'dev/disk/by-uuid', uuid));
    },
    setHostname(name) {
      mkdirSync(join(root, 'proc/sys/kernel'), { recursive: true });
      rmSync(join(root, 'proc/sys/kernel/hostname'), { force: true });
      if (name !== null) writeFileSync(join(root, 'proc/sys/kernel/hostname'), `${name}\n`);
    },
    setCpu(model, count = 2) {
      rmSync(join(root, 'proc/cpuinfo'), { force: true });
      if (model === null) return;
      const one = (i: number) => `processor\t: ${i}\nvendor_id\t: GenuineIntel\nmodel name\t: ${model}\nflags\t\t: fpu vme\n`;
      writeFileSync(join(root, 'proc/cpuinfo'), Array.from({ length: count }, (_, i) => one(i)).join('\n'));
    },
    setNic(name, mac, opts = {}) {
      const nic = join(root, 'sys/class/net', name);
      rmSync(nic, { recursive: true, force: true });
      if (mac === null) return;
      mkdirSync(nic, { recursive: true });
      if (!opts.virtual) mkdirSync(join(nic, 'device'));
      writeFileSync(join(nic, 'address'), `${mac}\n`);
      writeFileSync(join(nic, 'addr_assign_type'), `${opts.assignType ?? 0}\n`);
    },
    setSerials(board, product) {
      for (const [file, v] of [['board_serial', board], ['product_serial', product]] as const) {
        rmSync(join(root, 'sys/class/dmi/id', file), { force: true });
        if (v !== null) writeFileSync(join(root, 'sys/class/dmi/id', file), `${v}\n`);
      }
    },
    setRootDiskSerial(serial) {
      mkdirSync(join(root, 'sys/block/vda/vda1'), { recursive: true });
      rmSync(join(root, 'sys/block/vda/serial'), { force: true });
      if (serial !== null) writeFileSync(join(root, 'sys/block/vda/serial'), `${serial}\n`);
    },
  };
  host.setMachineId(randomBytes(16).toString('hex'));
  host.setProductUuid(randomUUID().toUpperCase());
  host.setFilesystemUuid(randomUUID());
  return host;
}

/** Issues a key that needs activation and records it in the vendor's database, as `floatd-vendor issue --data-dir` does. */
export async function issueActivationKey(vendor: Vendor, vdir: string, opts: { limit?: number; url?: string | null; container?: boolean; product?: string; seats?: number } = {}): Promise<{ token: string; id: string }> {
  const url = opts.url ?? undefined;
  const token = await vendor.issue({ product: opts.product ?? 'cad', seats: opts.seats ?? 5, activation: { limit: opts.limit ?? 1, url: url ?? undefined, containerBinding: opts.container ?? false } });
  const id = (JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { jti: string }).jti;
  const store = VendorStore.open(vdir);
  try {
    store.recordKey({ id, licensee: 'Acme', product: opts.product ?? 'cad', seats: opts.seats ?? 5, activationLimit: opts.limit ?? 1, containerBinding: opts.container ?? false, activationUrl: url ?? null, expiresAt: null, issuedAt: Date.now(), token });
  } finally {
    store.close();
  }
  return { token, id };
}

/** A small HTTP CONNECT proxy, optionally asking for Basic credentials; counts the tunnels it opened. */
export async function startConnectProxy(credentials: { user: string; password: string } | null = null): Promise<{ url: string; port: number; tunnels: string[]; refused: number; stop(): Promise<void> }> {
  const tunnels: string[] = [];
  const sockets = new Set<Socket>();
  const state = { refused: 0 };
  const server: Server = createServer((_req, res) => {
    res.writeHead(405).end();
  });
  server.on('connect', (req, client: Socket, head: Buffer) => {
    sockets.add(client);
    if (credentials !== null) {
      const expected = `Basic ${Buffer.from(`${credentials.user}:${credentials.password}`).toString('base64')}`;
      if (req.headers['proxy-authorization'] !== expected) {
        state.refused++;
        client.end('HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n');
        return;
      }
    }
    const [host, port] = [req.url!.slice(0, req.url!.lastIndexOf(':')), Number(req.url!.slice(req.url!.lastIndexOf(':') + 1))];
    const upstream = connect({ host: host.replace(/^\[|\]$/g, ''), port }, () => {
      tunnels.push(req.url!);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length > 0) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.end('HTTP/1.1 502 Bad Gateway\r\n\r\n'));
    client.on('error', () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: credentials === null ? `http://127.0.0.1:${port}` : `http://${credentials.user}:${encodeURIComponent(credentials.password)}@127.0.0.1:${port}`,
    port,
    tunnels,
    get refused() {
      return state.refused;
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

