import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, loadSettings, loggableConfig } from '../../src/config/config.js';
import { SETTING_NAMES, SETTINGS, specOf, type SettingSpec } from '../../src/config/settings.js';
import { tempDir } from '../support/helpers.js';

const README = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');

/** The rows of README.md's settings reference, as cells. */
function settingsRows(): string[][] {
  const header = '| setting | environment | flag | default | meaning |';
  const start = README.indexOf(header);
  expect(start).toBeGreaterThan(0);
  const lines = README.slice(start).split('\n').slice(2);
  const rows = lines.slice(0, lines.findIndex((line) => !line.startsWith('|')));
  return rows.map((row) => row.split('|').slice(1, -1).map((cell) => cell.trim()));
}

const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

/** The default as the reference shows it. */
function shownDefault(spec: SettingSpec<unknown>): string {
  if (spec.shownDefault !== undefined) return spec.shownDefault;
  if (spec.fallback === null || (Array.isArray(spec.fallback) && spec.fallback.length === 0)) return 'none';
  return Array.isArray(spec.fallback) ? spec.fallback.join(', ') : String(spec.fallback);
}

function configFile(content: unknown): string {
  const file = join(tempDir(), 'floatd.json');
  writeFileSync(file, JSON.stringify(content));
  return file;
}

describe('the settings reference in README.md', () => {
  const rows = settingsRows();

  it.each(SETTING_NAMES)('lists %s with its environment variables, earlier names and default', (name) => {
    const spec = specOf(name);
    const row = rows.find((cells) => ticked(cells[0]!).includes(name));
    expect(row, `no row for ${name}`).toBeDefined();
    const [names, env, , fallback] = row!;
    expect(ticked(env!)).toContain(spec.env);
    if (spec.alias !== undefined) expect(ticked(names!)).toContain(spec.alias);
    if (spec.envAlias !== undefined) expect(ticked(env!)).toContain(spec.envAlias);
    expect(fallback).toContain(shownDefault(spec));
  });

  it('names nothing that is no setting', () => {
    const known = new Set(SETTING_NAMES.flatMap((n) => [n, ...(specOf(n).alias === undefined ? [] : [specOf(n).alias!])]));
    const variables = new Set(SETTING_NAMES.flatMap((n) => [specOf(n).env, ...(specOf(n).envAlias === undefined ? [] : [specOf(n).envAlias!])]));
    for (const [names, env] of rows) {
      for (const name of ticked(names!)) expect(known, name).toContain(name);
      for (const variable of ticked(env!)) expect(variables, variable).toContain(variable);
    }
  });
});

describe('setting names', () => {
  it('reads the tcp.* and store.* names, in sections or dotted, and today\'s names and variables alike', () => {
    const file = configFile({ store: { dataDir: 'state' }, tcp: { listen: ['127.0.0.1:9000'], frameMaxBytes: 4096, backpressure: { totalBytes: 1 << 20 } } });
    const c = loadConfig({ configFile: file, env: { FLOATD_TCP_BACKLOG: '77', FLOATD_KEEPALIVE_SECONDS: '5' }, cwd: '/' });
    expect(c.dataDir).toBe(join(file, '..', 'state'));
    expect(c.listeners).toEqual([{ host: '127.0.0.1', port: 9000, name: 'tcp', tls: false }]);
    expect(c.frameMaxBytes).toBe(4096);
    expect(c.backpressure.totalBytes).toBe(1 << 20);
    expect(c.backlog).toBe(77);
    expect(c.keepAliveSeconds).toBe(5);
    expect(c.store).toEqual({ kind: 'sqlite', url: null, passwordFile: null, sslMode: null, caFile: null, poolSize: 10 });
    const flat = loadConfig({ env: {}, flags: { 'tcp.maxConnections': 50, idleTimeoutSeconds: 9, 'store.dataDir': '/d' }, cwd: '/' });
    expect([flat.maxConnections, flat.idleTimeoutSeconds, flat.dataDir]).toEqual([50, 9, '/d']);
    // A later source wins whichever name each uses.
    expect(loadConfig({ configFile: configFile({ frameMaxBytes: 1000 }), env: { FLOATD_TCP_FRAME_MAX_BYTES: '2000' } }).frameMaxBytes).toBe(2000);
  });

  it('refuses a setting given under both its names by one source, naming both', () => {
    const file = configFile({ frameMaxBytes: 1000, tcp: { frameMaxBytes: 2000 } });
    expect(() => loadConfig({ configFile: file, env: {} })).toThrow(`${file} sets both "frameMaxBytes" and "tcp.frameMaxBytes", which are one setting (tcp.frameMaxBytes); keep one`);
    expect(() => loadConfig({ env: { FLOATD_LISTEN: ':1', FLOATD_TCP_LISTEN: ':2' } })).toThrow(
      'the environment sets both FLOATD_LISTEN and FLOATD_TCP_LISTEN, which are one setting (tcp.listen); keep one',
    );
    expect(() => loadConfig({ env: {}, flags: { dataDir: '/a', 'store.dataDir': '/b' } })).toThrow('the command line sets both "dataDir" and "store.dataDir"');
  });

  it('names a bad value by the name it was given under, and suggests close names of either form', () => {
    expect(() => loadConfig({ env: { FLOATD_TCP_BACKLOG: '0' } })).toThrow(/^setting tcp.backlog \(environment FLOATD_TCP_BACKLOG\) must be a whole number/);
    expect(() => loadConfig({ env: { FLOATD_BACKLOG: '0' } })).toThrow(/^setting backlog \(environment FLOATD_BACKLOG\) must be a whole number/);
    expect(() => loadConfig({ env: {}, flags: { 'tcp.backpressure.connectionBytes': 1 << 20, 'tcp.backpressure.totalBytes': 1 << 19 } })).toThrow(
      /setting tcp.backpressure.totalBytes \(command line\) must be at least tcp.backpressure.connectionBytes/,
    );
    expect(() => loadConfig({ configFile: configFile({ tcp: { backpressure: { totalByte: 1 } } }), env: {} })).toThrow(/unknown setting "tcp.backpressure.totalByte"; did you mean "tcp.backpressure.totalBytes"\?$/);
    expect(() => loadConfig({ configFile: configFile({ tcp: { frameMaxByte: 1 } }), env: {} })).toThrow(/unknown setting "tcp.frameMaxByte"; did you mean "tcp.frameMaxBytes"\?$/);
    expect(() => loadConfig({ configFile: configFile({ backpressure: { totalByte: 1 } }), env: {} })).toThrow(/did you mean "backpressure.totalBytes"\?$/);
    expect(loadConfig({ env: { FLOATD_TCP_BAKLOG: '1' } }).unknownEnvironment).toEqual(['environment variable FLOATD_TCP_BAKLOG names no floatd setting and is ignored; did you mean "FLOATD_TCP_BACKLOG"?']);
    expect(() => loadConfig({ env: { FLOATD_STORE_KIND: 'mysql' } })).toThrow(/setting store.kind \(environment FLOATD_STORE_KIND\) must be one of sqlite, postgres/);
    expect(() => loadConfig({ env: { FLOATD_STORE_KIND: 'postgres' } })).toThrow(/store.kind \(environment FLOATD_STORE_KIND\) is "postgres", which needs store.url \(FLOATD_STORE_URL\)/);
    expect(() => loadConfig({ env: { FLOATD_STORE_URL: 'postgres://db/floatd' } })).toThrow(/setting store.url \(environment FLOATD_STORE_URL\) is for store.kind "postgres"; store.kind is "sqlite"/);
    expect(() => loadConfig({ env: { FLOATD_STORE_KIND: 'postgres', FLOATD_STORE_URL: 'mysql://ops:hunter2@db/floatd' } })).toThrow(/must be a PostgreSQL URL such as .* \(postgres:\/\/ or postgresql:\/\/\); got "mysql:\/\/ops:\*\*\*@db\/floatd"$/);
    expect(() => loadConfig({ env: { FLOATD_STORE_KIND: 'postgres', FLOATD_STORE_URL: 'postgres://db' } })).toThrow(/must name the database/);
    const pgc = loadConfig({ env: { FLOATD_STORE_KIND: 'postgres', FLOATD_STORE_URL: 'postgres://floatd:hunter2@db:5433/floatd', FLOATD_STORE_POOL_SIZE: '20', FLOATD_CLUSTER_NODE_ID: 'node-a' } });
    expect(pgc.store).toMatchObject({ kind: 'postgres', url: 'postgres://floatd:hunter2@db:5433/floatd', poolSize: 20 });
    expect(pgc.nodeId).toBe('node-a');
    expect(JSON.stringify(loggableConfig(pgc))).not.toContain('hunter2');
    expect(() => loadConfig({ env: { FLOATD_CLUSTER_NODE_ID: 'a b' } })).toThrow(/setting cluster.nodeId .* must be 1 to 64 letters/);
  });
});

describe('the web endpoint\'s own limits', () => {
  it('follow the NDJSON ones unless set', () => {
    expect(loadConfig({ env: {} }).http).toMatchObject({ bodyMaxBytes: 16384, requestTimeoutSeconds: 10 });
    expect(loadConfig({ env: { FLOATD_FRAME_MAX_BYTES: '4096', FLOATD_HANDSHAKE_TIMEOUT_SECONDS: '3' } }).http).toMatchObject({ bodyMaxBytes: 4096, requestTimeoutSeconds: 3 });
    const own = loadConfig({ env: { FLOATD_HTTP_BODY_MAX_BYTES: '65536', FLOATD_HTTP_REQUEST_TIMEOUT_SECONDS: '30' } });
    expect([own.http.bodyMaxBytes, own.http.requestTimeoutSeconds, own.frameMaxBytes, own.handshakeTimeoutSeconds]).toEqual([65536, 30, 16384, 10]);
    expect(() => loadConfig({ env: { FLOATD_HTTP_BODY_MAX_BYTES: '10' } })).toThrow(/setting http.bodyMaxBytes \(environment FLOATD_HTTP_BODY_MAX_BYTES\) must be a whole number from 256/);
  });
});

describe('secrets', () => {
  it('come back apart from the settings, and a proxy password is never quoted back or logged', () => {
    const { config, secrets } = loadSettings({ env: { HTTPS_PROXY: 'http://ops:hunter2@proxy.example:3128' }, cwd: '/srv' });
    expect(secrets).toEqual({ serverKeyFile: '/srv/data/server-key.jwk', adminTokenFile: '/srv/data/admin-token', activationProxy: 'http://ops:hunter2@proxy.example:3128/', storeUrl: null });
    expect(JSON.stringify(loggableConfig(config))).not.toContain('hunter2');
    expect(loggableConfig(config).activation.proxy).toBe('http://ops:***@proxy.example:3128/');
    expect(() => loadConfig({ env: { FLOATD_ACTIVATION_PROXY: 'socks5://ops:hunter2@proxy.example' } })).toThrow(/must be an http:\/\/ proxy URL .*; got "socks5:\/\/ops:\*\*\*@proxy.example"$/);
    expect(() => loadConfig({ env: { HTTPS_PROXY: 'ftp://ops:hunter2@proxy.example' } })).toThrow(/^environment HTTPS_PROXY must be an http:\/\/ proxy URL .*; got "ftp:\/\/ops:\*\*\*@proxy.example"$/);
    expect(Object.values(SETTINGS).filter((s: SettingSpec<unknown>) => s.secret === true)).toHaveLength(2);
  });
});
