import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { parseHostPort } from '../../src/config/listen-address.js';
import { tempDir } from '../support/helpers.js';

describe('loadConfig', () => {
  it('has working defaults: ./data, every interface on 8989, 1800 s leases', () => {
    const c = loadConfig({ env: {}, cwd: '/srv/app' });
    expect(c.dataDir).toBe('/srv/app/data');
    expect(c.dbFile).toBe('/srv/app/data/floatd.db');
    expect(c.listeners).toEqual([{ host: '::', port: 8989, name: 'tcp', tls: false }]);
    expect(c.http.listen).toEqual([{ host: '127.0.0.1', port: 8990, name: 'http', tls: false }]);
    expect(c.https.listen).toEqual([]);
    expect(c.tls).toBeNull();
    expect(c.leaseSeconds).toBe(1800);
    expect(c.frameMaxBytes).toBe(16384);
    expect(c.handshakeTimeoutSeconds).toBe(10);
    expect(c.evaluation).toEqual({ seats: 5, days: 30 });
    expect(Object.isFrozen(c) && Object.isFrozen(c.listeners) && Object.isFrozen(c.listeners[0])).toBe(true);
  });

  it('merges file, then environment, then flags', () => {
    const dir = tempDir();
    const file = join(dir, 'floatd.json');
    writeFileSync(file, JSON.stringify({ leaseSeconds: 600, dataDir: 'state', log: { level: 'warn' }, listeners: [{ address: '127.0.0.1:9000', name: 'lan' }] }));
    const fileOnly = loadConfig({ configFile: file, env: {}, cwd: '/' });
    expect(fileOnly).toMatchObject({ leaseSeconds: 600, dataDir: join(dir, 'state'), log: { level: 'warn' } });
    expect(fileOnly.listeners).toEqual([{ host: '127.0.0.1', port: 9000, name: 'lan', tls: false }]);
    const withEnv = loadConfig({ configFile: file, env: { FLOATD_LEASE_SECONDS: '900', FLOATD_LISTEN: '[::1]:1,10.0.0.1' }, cwd: '/' });
    expect(withEnv.leaseSeconds).toBe(900);
    expect(withEnv.listeners).toEqual([{ host: '::1', port: 1, name: 'tcp', tls: false }, { host: '10.0.0.1', port: 8989, name: 'tcp', tls: false }]);
    expect(loadConfig({ configFile: file, env: { FLOATD_LEASE_SECONDS: '900' }, flags: { leaseSeconds: '45' }, cwd: '/' }).leaseSeconds).toBe(45);
  });

  it.each([
    [{ leaseSeconds: '29' }, /setting leaseSeconds \(command line\) must be a whole number from 30/],
    [{ leaseSeconds: 'abc' }, /leaseSeconds.*got "abc"/],
    [{ listeners: ['host:99999'] }, /setting listeners.*not a port number/],
    [{ listeners: ['fe80::zz:80'] }, /brackets/],
    [{ listeners: [] }, /at least one/],
    [{ listeners: ['https://host:1'] }, /setting listeners .* "https:\/\/host:1": the only scheme here is tls:\/\//],
    [{ listeners: ['tls://127.0.0.1'] }, /setting listeners \(command line\) has TLS listeners, which need tls.certFile and tls.keyFile/],
    [{ 'https.listen': ['0.0.0.0'] }, /setting https.listen \(command line\) has TLS listeners, which need tls.certFile and tls.keyFile/],
    [{ 'tls.certFile': '/c.pem' }, /settings tls.certFile and tls.keyFile go together; tls.keyFile is not set/],
    [{ 'tls.certFile': '/c.pem', 'tls.keyFile': '/k.pem', 'tls.clientCertificates': 'require' }, /needs tls.clientCaFile/],
    [{ 'tls.certFile': '/c.pem', 'tls.keyFile': '/k.pem', 'tls.identityFromCertificate': 'true' }, /needs tls.clientCertificates/],
    [{ 'tls.profile': 'old' }, /setting tls.profile .* must be one of intermediate, modern/],
    [{ 'http.listen': ['http://x'] }, /give HOST:PORT without a scheme/],
    [{ 'log.level': 'loud' }, /log.level.*one of fatal, error/],
    [{ frameMaxBytes: '10' }, /frameMaxBytes/],
    [{ 'evaluation.seats': '-1' }, /evaluation.seats/],
  ])('refuses %j naming the setting', (flags, message) => {
    expect(() => loadConfig({ env: {}, flags, cwd: '/' })).toThrow(message);
  });

  it('reads tls:// listeners, the web endpoint and TLS settings', () => {
    const c = loadConfig({
      env: { FLOATD_HTTPS_LISTEN: '0.0.0.0,[::1]:9443', FLOATD_TLS_CERT: 'c.pem', FLOATD_TLS_KEY: 'k.pem' },
      flags: { listeners: ['tls://10.0.0.1', 'tcp.example:1'], 'http.listen': [] },
      cwd: '/etc/floatd',
    });
    expect(c.listeners).toEqual([{ host: '10.0.0.1', port: 8991, name: 'tls', tls: true }, { host: 'tcp.example', port: 1, name: 'tcp', tls: false }]);
    expect(c.http.listen).toEqual([]);
    expect(c.https.listen).toEqual([{ host: '0.0.0.0', port: 8443, name: 'https', tls: true }, { host: '::1', port: 9443, name: 'https', tls: true }]);
    expect(c.tls).toEqual({ certFile: '/etc/floatd/c.pem', keyFile: '/etc/floatd/k.pem', clientCaFile: null, clientCertificates: 'off', identityFromCertificate: false, profile: 'intermediate' });
  });

  it('names the environment variable a bad value came from', () => {
    expect(() => loadConfig({ env: { FLOATD_MAX_CONNECTIONS: '0' }, cwd: '/' })).toThrow(/maxConnections \(environment FLOATD_MAX_CONNECTIONS\)/);
  });

  it('refuses unknown keys and unreadable files in the config file, naming the file', () => {
    const dir = tempDir();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ leaseSecond: 60 }));
    expect(() => loadConfig({ configFile: file, env: {} })).toThrow(/c\.json: unknown setting "leaseSecond"/);
    writeFileSync(file, '{ not json');
    expect(() => loadConfig({ configFile: file, env: {} })).toThrow(/c\.json: line 1, column 3: the config file is not valid JSON/);
    expect(() => loadConfig({ configFile: join(dir, 'missing.json'), env: {} })).toThrow(/missing\.json/);
  });

  it('reads where CLT rules come from, resolving paths against the config file', () => {
    const dir = tempDir();
    const file = join(dir, 'floatd.json');
    writeFileSync(file, JSON.stringify({ rules: { file: 'rules.clt', groupsFile: 'groups', defaultFrequencyPeriodMs: 0 } }));
    expect(loadConfig({ configFile: file, env: {} }).rules).toEqual({
      file: join(dir, 'rules.clt'),
      inline: null,
      groupsFile: join(dir, 'groups'),
      defaultFrequencyPeriodMs: 0,
    });
    expect(loadConfig({ env: {}, flags: { 'rules.inline': ['CLT a connection_limit=1', 'CLT b BLOCK'] } }).rules.inline).toBe('CLT a connection_limit=1\nCLT b BLOCK');
    expect(loadConfig({ env: {} }).rules).toEqual({ file: null, inline: null, groupsFile: null, defaultFrequencyPeriodMs: 60_000 });
    expect(() => loadConfig({ env: { FLOATD_RULES_FILE: '/r.clt' }, flags: { 'rules.inline': 'CLT a BLOCK' } })).toThrow(
      /rules.file \(environment FLOATD_RULES_FILE\) and rules.inline \(command line\) are both set/,
    );
    expect(() => loadConfig({ env: {}, flags: { 'rules.inline': [1, 2] } })).toThrow(/setting rules.inline .*array of rule lines/);
  });

  it('accepts the shipped example config', () => {
    const c = loadConfig({ configFile: join(import.meta.dirname, '..', '..', 'config', 'floatd.example.json'), env: {} });
    expect(c.leaseSeconds).toBe(1800);
  });
});

describe('parseHostPort', () => {
  it.each([
    ['example.com:9000', { host: 'example.com', port: 9000 }],
    ['example.com', { host: 'example.com', port: 8989 }],
    ['[::1]:8989', { host: '::1', port: 8989 }],
    ['[::]', { host: '::', port: 8989 }],
    ['::1', { host: '::1', port: 8989 }],
    ['9000', { host: '', port: 9000 }],
    [':9000', { host: '', port: 9000 }],
    ['*:9000', { host: '', port: 9000 }],
    ['0.0.0.0:0', { host: '0.0.0.0', port: 0 }],
  ])('%s', (text, expected) => {
    expect(parseHostPort(text)).toEqual(expected);
  });

  it.each(['', 'host:', 'host:port', '[::1', '[nothex]:1', 'bad_host!:1', 'h:70000'])('refuses %j', (text) => {
    expect(() => parseHostPort(text)).toThrow();
  });
});
