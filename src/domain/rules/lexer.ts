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

/** The lexer's state over one text: the statement being read, where, and what went wrong. */
class Lexer {
  readonly statements: Statement[] = [];
  readonly errors: LexError[] = [];
  private tokens: Token[] = [];
  private line = 1;
  private pos = 0;
  /** A `\` was read: only blanks and a comment may follow it before the line end. */
  private continuing = false;
  /** The current statement is broken; ignore the rest of its physical line. */
  private skipping = false;

  constructor(private readonly text: string) {}

  run(): void {
    while (this.pos < this.text.length) this.step(this.text[this.pos]!);
    if (this.continuing) {
      this.errors.push({ line: this.line, kind: 'premature-continuation', message: 'the file ends right after a "\\" that promised a continuation line' });
    } else if (this.tokens.length > 0) {
      this.statements.push({ line: this.line, tokens: this.tokens });
    }
  }

  /** Reads what starts with `c` at `pos`. */
  private step(c: string): void {
    const text = this.text;
    if (isLineEnd(c)) return this.lineEnd(c);
    if (this.skipping || c === '#') {
      while (this.pos < text.length && !isLineEnd(text[this.pos]!)) this.pos += 1;
      return;
    }
    if (isBlank(c)) {
      this.pos += 1;
      return;
    }
    if (this.continuing) return this.fail('premature-continuation', 'a "\\" continues the statement on the next line, so nothing but a comment may follow it on its line');
    if (c === '"' || c === "'") return this.quoted(c);
    if (c === '\\') {
      this.continuing = true;
      this.pos += 1;
      return;
    }
    if (c === '=') {
      this.tokens.push({ kind: 'equals', text: '=', quoted: false });
      this.pos += 1;
      return;
    }
    if (isWordChar(c)) return this.word();
    // Surrogate pairs are >= 0x80 and so word characters; anything here is one ASCII character.
    this.tokens.push({ kind: 'other', text: c, quoted: false });
    this.pos += 1;
  }

  /** A line end ends the statement unless a `\` continued it. */
  private lineEnd(c: string): void {
    this.pos += c === '\r' && this.text[this.pos + 1] === '\n' ? 2 : 1;
    if (this.continuing) {
      this.continuing = false;
    } else {
      if (this.tokens.length > 0) this.statements.push({ line: this.line, tokens: this.tokens });
      this.tokens = [];
    }
    this.skipping = false;
    this.line += 1;
  }

  private quoted(quote: string): void {
    const text = this.text;
    let end = this.pos + 1;
    while (end < text.length && text[end] !== quote && !isLineEnd(text[end]!)) end += 1;
    if (end >= text.length || text[end] !== quote) return this.fail('unterminated-quote', `the quote ${quote} is not closed before the end of the line`);
    this.tokens.push({ kind: 'word', text: text.slice(this.pos + 1, end), quoted: true });
    this.pos = end + 1;
  }

  private word(): void {
    const text = this.text;
    let end = this.pos + 1;
    while (end < text.length && isWordChar(text[end]!)) end += 1;
    this.tokens.push({ kind: 'word', text: text.slice(this.pos, end), quoted: false });
    this.pos = end;
  }

  private fail(kind: LexErrorKind, message: string): void {
    this.errors.push({ line: this.line, kind, message });
    this.tokens = [];
    this.continuing = false;
    this.skipping = true;
  }
}

export function tokenize(text: string): { statements: Statement[]; errors: LexError[] } {
  const lexer = new Lexer(text);
  lexer.run();
  return { statements: lexer.statements, errors: lexer.errors };
}
