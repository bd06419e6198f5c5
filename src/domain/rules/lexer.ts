/**
 * The tokenizer of the CLT rule language (CLT-RULES.md section 1): turns the
 * text of a rules file into statements, each a list of tokens and the
 * physical line it ended on. Errors of the lexical level (an unclosed quote,
 * a misplaced `\`) drop the statement they occur in and are reported; the
 * caller rejects the file if there are any.
 */

export type TokenKind = 'word' | 'equals' | 'other';

export interface Token {
  readonly kind: TokenKind;
  readonly text: string;
  readonly quoted: boolean;
}

export interface Statement {
  /** 1-based physical line the statement ended on. */
  readonly line: number;
  readonly tokens: readonly Token[];
}

export type LexErrorKind = 'unterminated-quote' | 'premature-continuation';

export interface LexError {
  readonly line: number;
  readonly kind: LexErrorKind;
  readonly message: string;
}

const WORD_PUNCTUATION = new Set(['_', '-', '.', '*', '@', ':', '+', '/']);

function isWordChar(c: string): boolean {
  const code = c.charCodeAt(0);
  if (code >= 0x80) return true;
  return (code >= 0x30 && code <= 0x39) || (code >= 0x41 && code <= 0x5a) || (code >= 0x61 && code <= 0x7a) || WORD_PUNCTUATION.has(c);
}

function isLineEnd(c: string): boolean {
  return c === '\n' || c === '\r';
}

/** Space, tab and every other control character separate tokens (but line ends end statements). */
function isBlank(c: string): boolean {
  return c.charCodeAt(0) <= 0x20 && !isLineEnd(c);
}

export function tokenize(text: string): { statements: Statement[]; errors: LexError[] } {
  const statements: Statement[] = [];
  const errors: LexError[] = [];
  let tokens: Token[] = [];
  let line = 1;
  let pos = 0;
  /** A `\` was read: only blanks and a comment may follow it before the line end. */
  let continuing = false;
  /** The current statement is broken; ignore the rest of its physical line. */
  let skipping = false;

  const fail = (kind: LexErrorKind, message: string): void => {
    errors.push({ line, kind, message });
    tokens = [];
    continuing = false;
    skipping = true;
  };

  while (pos < text.length) {
    const c = text[pos]!;
    if (isLineEnd(c)) {
      pos += c === '\r' && text[pos + 1] === '\n' ? 2 : 1;
      if (continuing) {
        continuing = false;
      } else {
        if (tokens.length > 0) statements.push({ line, tokens });
        tokens = [];
      }
      skipping = false;
      line += 1;
      continue;
    }
    if (skipping || c === '#') {
      while (pos < text.length && !isLineEnd(text[pos]!)) pos += 1;
      continue;
    }
    if (isBlank(c)) {
      pos += 1;
      continue;
    }
    if (continuing) {
      fail('premature-continuation', 'a "\\" continues the statement on the next line, so nothing but a comment may follow it on its line');
      continue;
    }
    if (c === '"' || c === "'") {
      let end = pos + 1;
      while (end < text.length && text[end] !== c && !isLineEnd(text[end]!)) end += 1;
      if (end >= text.length || text[end] !== c) {
        fail('unterminated-quote', `the quote ${c} is not closed before the end of the line`);
        continue;
      }
      tokens.push({ kind: 'word', text: text.slice(pos + 1, end), quoted: true });
      pos = end + 1;
      continue;
    }
    if (c === '\\') {
      continuing = true;
      pos += 1;
      continue;
    }
    if (c === '=') {
      tokens.push({ kind: 'equals', text: '=', quoted: false });
      pos += 1;
      continue;
    }
    if (isWordChar(c)) {
      let end = pos + 1;
      while (end < text.length && isWordChar(text[end]!)) end += 1;
      tokens.push({ kind: 'word', text: text.slice(pos, end), quoted: false });
      pos = end;
      continue;
    }
    // Surrogate pairs are >= 0x80 and so word characters; anything here is one ASCII character.
    tokens.push({ kind: 'other', text: c, quoted: false });
    pos += 1;
  }
  if (continuing) {
    errors.push({ line, kind: 'premature-continuation', message: 'the file ends right after a "\\" that promised a continuation line' });
  } else if (tokens.length > 0) {
    statements.push({ line, tokens });
  }
  return { statements, errors };
}
