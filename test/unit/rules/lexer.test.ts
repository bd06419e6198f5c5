import { describe, expect, it } from 'vitest';
import { tokenize } from '../../../src/domain/rules/lexer.js';

/** Statements as arrays of token texts (quoted tokens shown in «»), with their end lines. */
function lex(text: string): Array<[number, string[]]> {
  const { statements, errors } = tokenize(text);
  expect(errors).toEqual([]);
  return statements.map((s) => [s.line, s.tokens.map((t) => (t.quoted ? `«${t.text}»` : t.text))]);
}

describe('CLT tokenizer', () => {
  it.each<[string, string, Array<[number, string[]]>]>([
    ['words split on blanks', 'CLT alice connection_limit=2', [[1, ['CLT', 'alice', 'connection_limit', '=', '2']]]],
    ['= is a token of its own', 'a=b', [[1, ['a', '=', 'b']]]],
    ['= with spaces around', 'a = b', [[1, ['a', '=', 'b']]]],
    ['tabs and control characters separate', 'a\tb\u0001c\u000bd', [[1, ['a', 'b', 'c', 'd']]]],
    ['word characters _ - . * @ : + /', 'x_y-z.w*v@u:t+s/r', [[1, ['x_y-z.w*v@u:t+s/r']]]],
    ['non-ASCII letters are word characters', 'CLT jürgen 用户 élan', [[1, ['CLT', 'jürgen', '用户', 'élan']]]],
    ['characters above U+FFFF are word characters', 'CLT 𝒜lice', [[1, ['CLT', '𝒜lice']]]],
    ['other punctuation is one-character tokens', 'a,b;c', [[1, ['a', ',', 'b', ';', 'c']]]],
    ['punctuation runs split per character', 'a!!b', [[1, ['a', '!', '!', 'b']]]],
    ['double quotes make one token', 'CLT "alice smith"', [[1, ['CLT', '«alice smith»']]]],
    ['single quotes make one token', "CLT 'alice smith'", [[1, ['CLT', '«alice smith»']]]],
    ['# = and \\ lose their meaning in quotes', 'CLT "a#b=c\\d"', [[1, ['CLT', '«a#b=c\\d»']]]],
    ['the other quote is plain inside quotes', `CLT "it's"`, [[1, ['CLT', `«it's»`]]]],
    ['an empty quoted token', 'CLT ""', [[1, ['CLT', '«»']]]],
    ['a quote right after a word starts a new token', 'ab"cd"', [[1, ['ab', '«cd»']]]],
    ['comment line is ignored', '# nothing here', []],
    ['comment after tokens', 'CLT a connection_limit=1 # two', [[1, ['CLT', 'a', 'connection_limit', '=', '1']]]],
    ['# ends a word', 'limit=10#x', [[1, ['limit', '=', '10']]]],
    ['blank lines are ignored', '\n\n  \nCLT a\n\n', [[4, ['CLT', 'a']]]],
    ['\\n ends statements', 'A b\nC d', [[1, ['A', 'b']], [2, ['C', 'd']]]],
    ['\\r\\n ends statements', 'A b\r\nC d\r\n', [[1, ['A', 'b']], [2, ['C', 'd']]]],
    ['lone \\r ends statements', 'A b\rC d', [[1, ['A', 'b']], [2, ['C', 'd']]]],
    ['no final newline', 'A b\nC d', [[1, ['A', 'b']], [2, ['C', 'd']]]],
    ['continuation joins lines; line is the last one', 'CLT a \\\n connection_limit=1', [[2, ['CLT', 'a', 'connection_limit', '=', '1']]]],
    ['continuation with blanks and a comment after \\', 'CLT a \\  # more\nb=1', [[2, ['CLT', 'a', 'b', '=', '1']]]],
    ['continuation over three lines', 'CLT \\\na \\\nb=1\n', [[3, ['CLT', 'a', 'b', '=', '1']]]],
    ['continuation with \\r\\n', 'CLT a \\\r\nb=1\r\n', [[2, ['CLT', 'a', 'b', '=', '1']]]],
    ['a blank line after a continued line ends the statement', 'CLT a \\\n\nCLT b', [[2, ['CLT', 'a']], [3, ['CLT', 'b']]]],
    ['\\ glued to a word still continues', 'CLT a\\\nb=1', [[2, ['CLT', 'a', 'b', '=', '1']]]],
    ['a comment-only line after a continued line ends the statement, as a blank one does', 'CLT a \\\n# note\nb=1', [[2, ['CLT', 'a']], [3, ['b', '=', '1']]]],
  ])('%s', (_name, text, expected) => {
    expect(lex(text)).toEqual(expected);
  });

  it.each<[string, string, 'unterminated-quote' | 'premature-continuation', number]>([
    ['unclosed double quote', 'CLT "alice', 'unterminated-quote', 1],
    ['unclosed single quote on line 3', '\n\nCLT \'al', 'unterminated-quote', 3],
    ['a quote is not carried over to the next line', 'CLT "al\nice x=1', 'unterminated-quote', 1],
    ['token after \\', 'CLT a \\ b=1', 'premature-continuation', 1],
    ['\\ at end of file', 'CLT a \\', 'premature-continuation', 1],
    ['\\ then comment at end of file', 'CLT a \\ # c', 'premature-continuation', 1],
    ['two backslashes', 'CLT a \\\\\nb=1', 'premature-continuation', 1],
    ['token after \\ on a continued line', 'CLT a \\\nb=1 \\ c', 'premature-continuation', 2],
  ])('%s is %s on line %i', (_name, text, kind, line) => {
    const { errors } = tokenize(text);
    expect(errors.map((e) => [e.kind, e.line])).toEqual([[kind, line]]);
  });

  it('drops only the broken statement and goes on', () => {
    const { statements, errors } = tokenize('CLT "bad\nCLT good x=1\n');
    expect(errors).toHaveLength(1);
    expect(statements.map((s) => s.line)).toEqual([2]);
  });
});
