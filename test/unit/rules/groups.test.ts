import { describe, expect, it } from 'vitest';
import { parseGroups } from '../../../src/domain/rules/groups.js';

describe('groups file', () => {
  it('maps users to their groups', () => {
    const result = parseGroups('# teams\neng.users = alice, bob\n! old style comment\nops.users=bob\r\nempty.users =\n');
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.groups.get('alice')).toEqual(['eng']);
    expect(result.groups.get('bob')).toEqual(['eng', 'ops']);
    expect(result.groups.get('carol')).toBeUndefined();
  });

  it.each([
    ['a line without .users', 'eng = alice', 1],
    ['a bare word', '\nalice', 2],
    ['a group listed twice', 'eng.users=a\neng.users=b', 2],
    ['a user name with a space', 'eng.users = al ice', 1],
  ])('refuses %s, naming the line', (_name, text, line) => {
    const result = parseGroups(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.errors[0]!.line).toBe(line);
  });
});
