import { describe, expect, it } from 'vitest';
import { parseServerAddress } from '../../src/client/server-address.js';

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
