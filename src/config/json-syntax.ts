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

/** The first place `text` is not JSON, or null when it is. */
function firstProblem(text: string): Stop | null {
  let i = 0;
  const ws = () => {
    while (i < text.length && ' \t\n\r'.includes(text[i]!)) i++;
  };
  const stop = (expected: string, at = i): never => {
    const trailingComma = (text[at] === '}' || text[at] === ']') && /,\s*$/.test(text.slice(0, at));
    throw new Stop(at, trailingComma ? `a comma before ${text[at]} (JSON allows no trailing comma)` : `expected ${expected}, found ${shown(text[at])}`);
  };
  const string = (what: string) => {
    if (text[i] !== '"') stop(what);
    i++;
    for (;;) {
      const c = text[i];
      if (c === undefined) stop('the closing " of a string');
      if (c === '"') {
        i++;
        return;
      }
      if (c! < ' ') stop('the closing " of a string (a line break inside a string is written \\n)');
      if (c === '\\') {
        const e = text[i + 1];
        if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(i + 2, i + 6))) i += 6;
        else if (e !== undefined && '"\\/bfnrt'.includes(e)) i += 2;
        else throw new Stop(i, `expected an escape after the backslash (\\" \\\\ \\/ \\b \\f \\n \\r \\t or \\uXXXX), found \\${e ?? ''}; a Windows path is written C:\\\\dir or C:/dir`);
      } else i++;
    }
  };
  const value = (): void => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      for (;;) {
        ws();
        string('a property name in double quotes');
        ws();
        if (text[i] !== ':') stop('":" after the property name');
        i++;
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === '}') {
          i++;
          return;
        } else stop('"," or "}"');
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      for (;;) {
        value();
        ws();
        if (text[i] === ',') i++;
        else if (text[i] === ']') {
          i++;
          return;
        } else stop('"," or "]"');
      }
    }
    if (c === '"') return string('a value');
    const word = /^(true|false|null)(?![A-Za-z0-9_])/.exec(text.slice(i));
    if (word !== null) {
      i += word[0].length;
      return;
    }
    const number = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?(?![A-Za-z0-9_.])/.exec(text.slice(i));
    if (number !== null) {
      i += number[0].length;
      return;
    }
    stop('a value (a string in double quotes, a number, true, false, null, an object or an array)');
  };
  try {
    value();
    ws();
    if (i < text.length) stop('nothing more after the end of the JSON value');
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
