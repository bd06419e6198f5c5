import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { tempDir } from '../support/helpers.js';

const TLS = { 'tls.certFile': '/c.pem', 'tls.keyFile': '/k.pem' };

describe('loadConfig: PROXY protocol on listeners', () => {
  it('reads proxyProtocol and trustedProxies on TCP, tls://, HTTP and HTTPS listeners from the config file', () => {
    const dir = tempDir();
    const file = join(dir, 'floatd.json');
    const proxied = { proxyProtocol: true, trustedProxies: ['10.0.0.0/8', '2001:db8::/32', '192.0.2.7', '::1'] };
    writeFileSync(
      file,
      JSON.stringify({
        listeners: [{ address: '0.0.0.0:8989', ...proxied }, { address: 'tls://0.0.0.0', ...proxied }, '127.0.0.1:7000'],
        http: { listen: [{ address: '0.0.0.0:8990', name: 'lb', ...proxied }] },
        https: { listen: [{ address: '0.0.0.0', ...proxied }] },
        tls: { certFile: '/c.pem', keyFile: '/k.pem' },
      }),
    );
    const c = loadConfig({ configFile: file, env: {}, cwd: '/' });
    const trustedProxies = [
      { address: '10.0.0.0', prefix: 8, family: 'ipv4' },
      { address: '2001:db8::', prefix: 32, family: 'ipv6' },
      { address: '192.0.2.7', prefix: 32, family: 'ipv4' },
      { address: '::1', prefix: 128, family: 'ipv6' },
    ];
    expect(c.listeners).toEqual([
      { host: '0.0.0.0', port: 8989, name: 'tcp', tls: false, proxyProtocol: { trustedProxies } },
      { host: '0.0.0.0', port: 8991, name: 'tls', tls: true, proxyProtocol: { trustedProxies } },
      { host: '127.0.0.1', port: 7000, name: 'tcp', tls: false },
    ]);
    expect(c.listeners[2]).not.toHaveProperty('proxyProtocol');
    expect(c.http.listen).toEqual([{ host: '0.0.0.0', port: 8990, name: 'lb', tls: false, proxyProtocol: { trustedProxies } }]);
    expect(c.https.listen).toEqual([{ host: '0.0.0.0', port: 8443, name: 'https', tls: true, proxyProtocol: { trustedProxies } }]);
    expect(Object.isFrozen(c.listeners[0]!.proxyProtocol!.trustedProxies[0])).toBe(true);
  });

  it('takes "proxyProtocol": false as off', () => {
    const c = loadConfig({ env: {}, cwd: '/', flags: { listeners: [{ address: '127.0.0.1:1', proxyProtocol: false }] } });
    expect(c.listeners).toEqual([{ host: '127.0.0.1', port: 1, name: 'tcp', tls: false }]);
  });

  it.each([
    [{ listeners: [{ address: ':1', proxyProtocol: true }] }, /^setting listeners \(command line\) \[0\]\.proxyProtocol needs trustedProxies/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: [] }] }, /\[0\]\.proxyProtocol needs trustedProxies/],
    [{ listeners: [':2', { address: ':1', trustedProxies: ['10.0.0.0/8'] }] }, /setting listeners .*\[1\]\.trustedProxies is set but proxyProtocol is not true/],
    [{ listeners: [{ address: ':1', proxyProtocol: 'yes', trustedProxies: ['10.0.0.0/8'] }] }, /\[0\]\.proxyProtocol must be true or false/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: '10.0.0.0/8' }] }, /\[0\]\.trustedProxies must be a list/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: ['10.0.0.0/8', '10.0.0/8'] }] }, /\[0\]\.trustedProxies\[1\] must be an IPv4 or IPv6 CIDR/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: ['10.0.0.0/33'] }] }, /\[0\]\.trustedProxies\[0\] "10.0.0.0\/33": an IPv4 prefix length is at most 32/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: ['fd00::/129'] }] }, /an IPv6 prefix length is at most 128/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: ['lb.example.com'] }] }, /trustedProxies\[0\] must be an IPv4 or IPv6 CIDR/],
    [{ listeners: [{ address: ':1', proxyProtocol: true, trustedProxies: [10] }] }, /trustedProxies\[0\] must be an IPv4 or IPv6 CIDR/],
    [{ listeners: [{ address: ':1', proxy: true }] }, /\[0\] has unknown key "proxy" \(allowed: address, name, proxyProtocol, trustedProxies\)/],
    [{ 'http.listen': [{ address: ':1', proxyProtocol: true }] }, /^setting http\.listen \(command line\) \[0\]\.proxyProtocol needs trustedProxies/],
    [{ ...TLS, 'https.listen': [':2', { address: ':1', proxyProtocol: true, trustedProxies: ['::/0', 'x'] }] }, /^setting https\.listen .*\[1\]\.trustedProxies\[1\] must be/],
  ])('refuses %j with CONFIG_INVALID naming the setting and index', (flags, message) => {
    let error: unknown;
    try {
      loadConfig({ env: {}, flags, cwd: '/' });
    } catch (err) {
      error = err;
    }
    expect(error).toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringMatching(message) });
  });
});
