/**
 * Where a JSON text first breaks the grammar (RFC 8259), as a line and column
 * people can go to, and what was expected there: JSON.parse names a character
 * offset at best, some of its messages name no place at all, and they differ
 * between Node.js versions.
 */
export interface JsonSyntaxProblem {
  /** 1-based. */
  readonly line: number;
  /** 1-based, in characters. */
  readonly column: number;
  readonly reason: string;
}

class Stop extends Error {
  constructor(
    readonly at: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

function shown(c: string | undefined): string {
  if (c === undefined) return 'the end of the file';
  return /[\x21-\x7e]/.test(c) ? `"${c}"` : `character U+${c.charCodeAt(0).toString(16).padStart(4, '0').toUpperCase()}`;
}

/** A recursive-descent walk over a JSON text that throws Stop at the first place it breaks the grammar. */
class JsonScanner {
  private i = 0;

  constructor(private readonly text: string) {}

  /** The whole text as one JSON value with nothing after it. */
  document(): void {
    this.value();
    this.ws();
    if (this.i < this.text.length) this.stop('nothing more after the end of the JSON value');
  }

  private ws(): void {
    while (this.i < this.text.length && ' \t\n\r'.includes(this.text[this.i]!)) this.i++;
  }

  private stop(expected: string, at = this.i): never {
    const text = this.text;
    const trailingComma = (text[at] === '}' || text[at] === ']') && /,\s*$/.test(text.slice(0, at));
    throw new Stop(at, trailingComma ? `a comma before ${text[at]} (JSON allows no trailing comma)` : `expected ${expected}, found ${shown(text[at])}`);
  }

  private string(what: string): void {
    const text = this.text;
    if (text[this.i] !== '"') this.stop(what);
    this.i++;
    for (;;) {
      const c = text[this.i];
      if (c === undefined) this.stop('the closing " of a string');
      if (c === '"') {
        this.i++;
        return;
      }
      if (c < ' ') this.stop('the closing " of a string (a line break inside a string is written \\n)');
      if (c === '\\') {
        const e = text[this.i + 1];
        if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(this.i + 2, this.i + 6))) this.i += 6;
        else if (e !== undefined && '"\\/bfnrt'.includes(e)) this.i += 2;
        else throw new Stop(this.i, `expected an escape after the backslash (\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX), found \\${e ?? ''}; a Windows path is written C:\\\\dir or C:/dir`);
      } else this.i++;
    }
  }

  private object(): void {
    this.i++;
    this.ws();
    if (this.text[this.i] === '}') {
      this.i++;
      return;
    }
    for (;;) {
      this.ws();
      this.string('a property name in double quotes');
      this.ws();
      if (this.text[this.i] !== ':') this.stop('":" after the property name');
      this.i++;
      this.value();
      this.ws();
      if (this.text[this.i] === ',') this.i++;
      else if (this.text[this.i] === '}') {
        this.i++;
        return;
      } else this.stop('"," or "}"');
    }
  }

  private array(): void {
    this.i++;
    this.ws();
    if (this.text[this.i] === ']') {
      this.i++;
      return;
    }
    for (;;) {
      this.value();
      this.ws();
      if (this.text[this.i] === ',') this.i++;
      else if (this.text[this.i] === ']') {
        this.i++;
        return;
      } else this.stop('"," or "]"');
    }
  }

  private value(): void {
    this.ws();
    const c = this.text[this.i];
    if (c === '{') return this.object();
    if (c === '[') return this.array();
    if (c === '"') return this.string('a value');
    const rest = this.text.slice(this.i);
    const word = /^(true|false|null)(?![A-Za-z0-9_])/.exec(rest);
    if (word !== null) {
      this.i += word[0].length;
      return;
    }
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?(?![A-Za-z0-9_.])/.exec(rest);
    if (number !== null) {
      this.i += number[0].length;
      return;
    }
    this.stop('a value (a string in double quotes, a number, true, false, null, an object or an array)');
  }
}

/** The first place `text` is not JSON, or null when it is. */
function firstProblem(text: string): Stop | null {
  try {
    new JsonScanner(text).document();
    return null;
  } catch (err) {
    if (err instanceof Stop) return err;
    throw err;
  }
}

/** The problem with `text`, which JSON.parse refused with `err`. */
export function jsonSyntaxProblem(text: string, err: Error): JsonSyntaxProblem {
  const problem = firstProblem(text);
  const at = problem?.at ?? Number(/at position (\d+)/.exec(err.message)?.[1] ?? text.length);
  const before = text.slice(0, at).split('\n');
  const reason = problem?.reason ?? err.message.replace(/,\s*(\.\.\.)?".*" is not valid JSON$/s, '').replace(/\s*in JSON at position \d+.*$/s, '');
  return { line: before.length, column: before.at(-1)!.length + 1, reason };
}
