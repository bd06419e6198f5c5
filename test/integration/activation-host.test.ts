import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { majorMinor } from '../../src/adapters/host/fingerprint.js';
import { formatStatus } from '../../src/cli/status.js';
import { fakeHost } from '../support/activation.js';
import { issueActivationKey } from '../support/activation.js';
import { refusal, site, vendorService, type Cleanup } from '../support/activation-site.js';
import { tempDir } from '../support/helpers.js';
import { errorOf, leaseOf, makeVendor } from '../support/server.js';

const cleanup: Cleanup = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** A KVM guest as a non-root server sees it: machine id, host name, CPU and one virtio NIC; no DMI, no /dev/disk/by-uuid, no disk serial. */
function vmHost(dataDir: string) {
  const host = fakeHost(dataDir);
  host.setProductUuid(null);
  host.setFilesystemUuid(null);
  host.setHostname('build-vm-7');
  host.setCpu('QEMU Virtual CPU version 2.5+', 4);
  host.setNic('eth0', '52:54:00:12:34:56');
  // Virtual devices and random addresses are no part of the binding.
  host.setNic('docker0', '02:42:ac:11:00:01', { virtual: true });
  host.setNic('wlan0', '9a:0b:11:22:33:44', { assignType: 1 });
  return host;
}

describe('host binding on ordinary VMs', () => {
  it('a VM with only machine-id, hostname, CPU and a NIC activates; one change is tolerated, a second breaks the binding', async () => {
    const vendor = await makeVendor();
    const { service, vdir } = await vendorService(vendor, cleanup);
    const key = await issueActivationKey(vendor, vdir, { url: service.url, product: 'cad' });
    const dataDir = tempDir('floatd-data-');
    const host = vmHost(dataDir);
    const s = await site(vendor, [key.token], cleanup, { dataDir, host });
    await s.activation((a, keys) => a.activateOnline(keys[0]!));
    expect(Object.keys(service.activations.list(key.id)[0]!.binding).sort()).toEqual(['cpu', 'hostname', 'machine-id', 'nic-mac']);
    leaseOf(await s.acquire('cad'));

    // The VM is renamed: one of four components changed, tolerated and shown.
    host.setHostname('build-vm-8');
    await s.floatd.checkActivations();
    leaseOf(await s.acquire('cad', 'bob'));
    expect(formatStatus(await s.floatd.status())).toContain('changed since activation, tolerated: hostname');

    // Then resized as well: two changes break the binding.
    host.setCpu('QEMU Virtual CPU version 2.5+', 8);
    await s.floatd.checkActivations();
    expect(errorOf(await s.acquire('cad', 'carol')).code).toBe('NOT_ACTIVATED');
    expect((await s.floatd.status()).keys[0]!.activation).toMatchObject({ state: 'hardware-changed', changed: ['cpu', 'hostname'] });
  });

  it('fewer than two readable components: activation is refused, naming every component tried, why it was unreadable, and the container-binding key', async () => {
    const vendor = await makeVendor();
    const { service, vdir } = await vendorService(vendor, cleanup);
    const key = await issueActivationKey(vendor, vdir, { url: service.url, product: 'cad' });
    const dataDir = tempDir('floatd-data-');
    const host = fakeHost(dataDir);
    host.setProductUuid(null);
    host.setFilesystemUuid(null);
    host.setMachineId(null);
    host.setHostname('lonely');
    const s = await site(vendor, [key.token], cleanup, { dataDir, host });
    const refused = await refusal(s.activation((a, keys) => a.activateOnline(keys[0]!)));
    expect(refused.code).toBe('ACTIVATION_HOST_UNBOUND');
    expect(refused.message).toContain("only 1 of the host's components can be read");
    for (const c of ['machine-id', 'product-uuid', 'board-serial', 'product-serial', 'filesystem-uuid', 'nic-mac', 'disk-serial', 'cpu']) {
      expect(refused.message).toMatch(new RegExp(`${c}: [^;]*(no such file|no |holds)`));
    }
    expect(refused.message).toContain('hostname: readable');
    expect(refused.message).toContain('--container-binding');
    expect(service.activations.list(key.id)).toHaveLength(0);

    // Host name and CPU alone repeat across machines: two of them are not enough either.
    host.setCpu('AMD EPYC 7B13', 2);
    const weak = await refusal(s.activation((a, keys) => a.activateOnline(keys[0]!)));
    expect(weak.code).toBe('ACTIVATION_HOST_UNBOUND');
    expect(weak.message).toMatch(/only cpu and hostname can be read, which repeat across machines/);
  });

  it('reads DMI serials, the root disk serial and the filesystem UUID from udev data where readable', async () => {
    const vendor = await makeVendor();
    const { service, vdir } = await vendorService(vendor, cleanup);
    const key = await issueActivationKey(vendor, vdir, { url: service.url, product: 'cad' });
    const dataDir = tempDir('floatd-data-');
    const host = vmHost(dataDir);
    host.setSerials('To be filled by O.E.M.', 'VMware-56 4d 2a');
    host.setRootDiskSerial('BTWA12345678');
    mkdirSync(join(host.root, 'run/udev/data'), { recursive: true });
    writeFileSync(join(host.root, `run/udev/data/b${majorMinor(statSync(dataDir).dev)}`), 'S:disk/by-uuid/x\nE:ID_FS_TYPE=ext4\nE:ID_FS_UUID=5E1F0C2A-0000-4000-8000-00000000AB12\n');
    const s = await site(vendor, [key.token], cleanup, { dataDir, host });
    await s.activation((a, keys) => a.activateOnline(keys[0]!));
    expect(Object.keys(service.activations.list(key.id)[0]!.binding).sort()).toEqual(['cpu', 'disk-serial', 'filesystem-uuid', 'hostname', 'machine-id', 'nic-mac', 'product-serial']);
  });

  it('an activation made with the old component set (machine-id, product-uuid, filesystem-uuid) still matches where more are read; only components in both are compared', async () => {
    const vendor = await makeVendor();
    const { service, vdir } = await vendorService(vendor, cleanup);
    const key = await issueActivationKey(vendor, vdir, { url: service.url, product: 'cad' });
    const dataDir = tempDir('floatd-data-');
    // Only the three components older versions read are readable when it is activated.
    const host = fakeHost(dataDir);
    const s = await site(vendor, [key.token], cleanup, { dataDir, host });
    await s.activation((a, keys) => a.activateOnline(keys[0]!));
    expect(Object.keys(service.activations.list(key.id)[0]!.binding).sort()).toEqual(['filesystem-uuid', 'machine-id', 'product-uuid']);

    // Now the host shows more components: the activation does not hold them, they are not compared.
    host.setHostname('app-1');
    host.setCpu('Intel Xeon', 2);
    host.setNic('eth0', '52:54:00:aa:bb:cc');
    await s.floatd.checkActivations();
    leaseOf(await s.acquire('cad'));
    expect((await s.floatd.status()).keys[0]!.activation).toMatchObject({ state: 'active', changed: [] });
    // One of the three it holds changes: tolerated; a second: broken.
    host.setFilesystemUuid('0b7e1c52-0000-4000-8000-000000000001');
    await s.floatd.checkActivations();
    leaseOf(await s.acquire('cad', 'bob'));
    host.setProductUuid('4C4C4544-0000-0000-0000-000000000000'.replace(/0{12}$/, '123456789abc'));
    await s.floatd.checkActivations();
    expect(errorOf(await s.acquire('cad', 'carol')).code).toBe('NOT_ACTIVATED');
  });
});
