import { describe, expect, it } from 'vitest';
import { parseServerAddress } from '../../src/client/server-address.js';
import { parseServerList, pinnedLookup, resolveEndpoints } from '../../src/client/server-list.js';

describe('parseServerAddress', () => {
  it('gives each scheme its own default port, and keeps a port that is written', () => {
    const parsed = ['lic.example.com', 'tls://lic.example.com', 'https://lic.example.com', 'http://lic.example.com', 'lic:1', 'tls://lic:2', 'HTTPS://lic:3/', 'http://[::1]:4']
      .map(parseServerAddress)
      .map(({ scheme, host, port, secure }) => [scheme, host, port, secure]);
    expect(parsed).toEqual([
      ['tcp', 'lic.example.com', 8989, false],
      ['tls', 'lic.example.com', 8991, true],
      ['https', 'lic.example.com', 8443, true],
      ['http', 'lic.example.com', 8990, false],
      ['tcp', 'lic', 1, false],
      ['tls', 'lic', 2, true],
      ['https', 'lic', 3, true],
      ['http', '::1', 4, false],
    ]);
  });

  it('refuses what is not a server address, saying what is wrong', () => {
    expect(() => parseServerAddress('ftp://lic')).toThrow(/"ftp:\/\/" is not a floatd address; write host\[:port\], tls:\/\/host\[:port\]/);
    expect(() => parseServerAddress('tcp://lic')).toThrow(/not a floatd address/);
    expect(() => parseServerAddress('https://lic/floatd')).toThrow(/without a path, query or user/);
    expect(() => parseServerAddress('https://admin@lic')).toThrow(/without a path, query or user/);
    expect(() => parseServerAddress('tls://lic:x')).toThrow(/"x" is not a port number/);
    expect(() => parseServerAddress('https://[::1')).toThrow(/without "]"/);
    expect(() => parseServerAddress('')).toThrow(/empty/);
  });
});

describe('parseServerList', () => {
  it('takes one address, a comma-separated list, or several strings (each may be a list)', () => {
    const hosts = (list: Parameters<typeof parseServerList>[0]) => parseServerList(list).map((a) => `${a.scheme} ${a.host} ${a.port}`);
    expect(hosts('lic')).toEqual(['tcp lic 8989']);
    expect(hosts('a:1, tls://b ,https://[::1]:3')).toEqual(['tcp a 1', 'tls b 8991', 'https ::1 3']);
    expect(hosts(['a:1,b:2', 'c'])).toEqual(['tcp a 1', 'tcp b 2', 'tcp c 8989']);
  });

  it('says which entry of a list is wrong', () => {
    expect(() => parseServerList('a:1,,b:2')).toThrow(/server 2 of the list "a:1,,b:2" is empty/);
    expect(() => parseServerList('a:1,')).toThrow(/server 2 of the list/);
    expect(() => parseServerList(['a:1', 'b:x'])).toThrow(/"x" is not a port number/);
    expect(() => parseServerList([])).toThrow(/no server address given/);
  });
});

describe('resolveEndpoints', () => {
  it('makes each address of a name a server of its own, in the list\'s order, and tries the same address once', async () => {
    const asked: string[] = [];
    const resolve = async (host: string) => {
      asked.push(host);
      if (host === 'gone.example') throw Object.assign(new Error('getaddrinfo ENOTFOUND gone.example'), { code: 'ENOTFOUND' });
      return host === 'lic.example'
        ? [
            { address: '10.0.0.1', family: 4 },
            { address: 'fd00::1', family: 6 },
          ]
        : [{ address: '10.0.0.1', family: 4 }];
    };
    const endpoints = await resolveEndpoints(parseServerList('lic.example,10.0.0.9:1,gone.example,alias.example,[fd00::2]'), resolve);
    expect(endpoints.map((e) => [e.label, e.ip ?? null])).toEqual([
      ['lic.example:8989 (10.0.0.1)', '10.0.0.1'],
      ['lic.example:8989 (fd00::1)', 'fd00::1'],
      ['10.0.0.9:1', null],
      // A name that does not resolve stays, so connecting to it says why.
      ['gone.example:8989', null],
      // alias.example resolves to an address already in the list: tried once.
      ['[fd00::2]:8989', null],
    ]);
    // Addresses written as IPs are not looked up.
    expect(asked.sort()).toEqual(['alias.example', 'gone.example', 'lic.example']);
    // The same address on another port, or under another scheme, is another server.
    expect(await resolveEndpoints(parseServerList('lic.example,lic.example:1,tls://lic.example:8989'), resolve)).toHaveLength(6);
  });

  it('pins a resolved address for net, tls and http, answering both ways they ask', () => {
    const [endpoint] = [{ address: parseServerAddress('lic.example'), ip: 'fd00::1', family: 6, label: 'lic.example:8989 (fd00::1)' }];
    const lookup = pinnedLookup(endpoint)!;
    const answers: unknown[][] = [];
    lookup('lic.example', { all: true }, (...args: unknown[]) => answers.push(args));
    lookup('lic.example', {}, (...args: unknown[]) => answers.push(args));
    expect(answers).toEqual([
      [null, [{ address: 'fd00::1', family: 6 }]],
      [null, 'fd00::1', 6],
    ]);
    expect(pinnedLookup({ address: parseServerAddress('10.0.0.1'), label: '10.0.0.1:8989' })).toBeUndefined();
  });
});
