import { describe, expect, it } from 'vitest';
import { checkProtocolVersion, clientAddress, identifyCaller, PROTOCOL_VERSION, suspendedRefusal } from '../../src/domain/door-rules.js';

const plain = { listener: 'tcp', remote: '10.0.0.7', tls: false, certifiedUser: null };
const certified = { listener: 'tls', remote: '10.0.0.7', tls: true, certifiedUser: 'alice' };

describe('the rules every door applies', () => {
  it('speaks one protocol version; an absent version is the current one', () => {
    expect(checkProtocolVersion(undefined)).toBeNull();
    expect(checkProtocolVersion(PROTOCOL_VERSION)).toBeNull();
    expect(checkProtocolVersion(2)).toMatchObject({ ok: false, code: 'UNSUPPORTED_VERSION', message: 'protocol version 2 is not supported (supported: 1)' });
  });

  it('shows an IPv4 client mapped into IPv6 by its IPv4 address, and leaves other addresses alone', () => {
    expect(clientAddress('::ffff:192.0.2.10')).toBe('192.0.2.10');
    expect(clientAddress('2001:db8::1')).toBe('2001:db8::1');
    expect(clientAddress('192.0.2.10')).toBe('192.0.2.10');
  });

  it('takes the client at its word without certificate identity, defaulting the host to its address', () => {
    expect(identifyCaller({ user: 'bob', instance: 'i-1' }, plain, true)).toEqual({ ok: true, caller: { user: 'bob', instance: 'i-1', host: '10.0.0.7', remote: '10.0.0.7', listener: 'tcp' } });
    expect(identifyCaller({ user: 'bob', host: 'ws-9', instance: 'i-1' }, certified, false)).toMatchObject({ ok: true, caller: { user: 'bob', host: 'ws-9', listener: 'tls' } });
    expect(identifyCaller({ instance: 'i-1' }, plain, false)).toMatchObject({ ok: false, code: 'BAD_REQUEST', details: { field: 'client.user' } });
  });

  it('takes the user from the client certificate on TLS when told to, and refuses a claim of another user or a certificate without a name', () => {
    expect(identifyCaller({ instance: 'i-1' }, certified, true)).toMatchObject({ ok: true, caller: { user: 'alice' } });
    expect(identifyCaller({ user: 'alice', instance: 'i-1' }, certified, true)).toMatchObject({ ok: true, caller: { user: 'alice' } });
    expect(identifyCaller({ user: 'mallory', instance: 'i-1' }, certified, true)).toMatchObject({ ok: false, code: 'IDENTITY_MISMATCH', message: 'the client certificate is for user "alice", not "mallory"' });
    expect(identifyCaller({ user: 'alice', instance: 'i-1' }, { ...certified, certifiedUser: null }, true)).toMatchObject({ ok: false, code: 'IDENTITY_MISMATCH' });
  });

  it('refuses new leases on a suspended listener with SUSPENDED, naming it', () => {
    expect(suspendedRefusal('tcp')).toMatchObject({ ok: false, code: 'SUSPENDED', message: expect.stringContaining('listener "tcp" is suspended') });
  });
});
