import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { majorMinor } from '../../src/adapters/host/fingerprint.js';
import { VendorStore } from '../../src/adapters/sqlite/vendor-store.js';
import { tempDir } from './helpers.js';
import type { Vendor } from './server.js';

/** A host root for FLOATD_HOST_ROOT: machine id, DMI product UUID, and the data directory's filesystem UUID, each changeable. */
export interface FakeHost {
  readonly root: string;
  setMachineId(id: string | null): void;
  setProductUuid(uuid: string | null): void;
  setFilesystemUuid(uuid: string | null): void;
}

export function fakeHost(dataDir: string): FakeHost {
  const root = tempDir('floatd-host-');
  mkdirSync(join(root, 'etc'), { recursive: true });
  mkdirSync(join(root, 'sys/class/dmi/id'), { recursive: true });
  mkdirSync(join(root, 'proc/self'), { recursive: true });
  mkdirSync(join(root, 'dev/disk/by-uuid'), { recursive: true });
  mkdirSync(dataDir, { recursive: true });
  writeFileSync(join(root, 'proc/self/mountinfo'), `25 1 ${majorMinor(statSync(dataDir).dev)} / / rw,relatime shared:1 - ext4 /dev/fakedisk1 rw\n`);
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
  };
  host.setMachineId(randomBytes(16).toString('hex'));
  host.setProductUuid(randomUUID().toUpperCase());
  host.setFilesystemUuid(randomUUID());
  return host;
}

/** Issues a key that needs activation and records it in the vendor's database, as `floatd vendor issue --data-dir` does. */
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

