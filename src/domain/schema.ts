/**
 * Schemas of the messages clients send, checked by type, field by field, the
 * same way at every door (NDJSON over TCP/TLS, HTTP bodies). A schema is plain
 * data: `validate` checks a parsed JSON value against it and names the first
 * field that is wrong; `toJsonSchema` derives the JSON Schema the web
 * endpoint publishes in its OpenAPI document, so the two cannot disagree.
 *
 * Strings are well-formed Unicode (no lone surrogates, which do not survive
 * storage as UTF-8) without control characters; lengths count characters
 * (code points), as JSON Schema does. Numbers are finite, and integers safe
 * (a number JSON cannot carry exactly could not be echoed faithfully). A
 * property that is not required may be left out or be `null`.
 */

export interface Invalid {
  /** The field, as people wrote it: `client.user`, `items[2]`, or `body` for the whole message. */
  readonly field: string;
  readonly message: string;
}

export type Checked<T> = { readonly ok: true; readonly value: T } | ({ readonly ok: false } & Invalid);

interface Base<T> {
  readonly description?: string;
  /** Carries the type of a valid value; never set. */
  readonly __type?: T;
}

export interface TextSchema extends Base<string> {
  readonly kind: 'text';
  readonly minLength: number;
  readonly maxLength: number;
  /**
   * A stricter form, as an ECMA-262 pattern (`u` flag) that admits no control
   * character, with what it means for the message (`a whole number from 1 to 10`).
   */
  readonly form?: { readonly pattern: string; readonly means: string };
}

export interface IntegerSchema extends Base<number> {
  readonly kind: 'integer';
  readonly minimum: number;
  readonly maximum: number;
}

/** Any finite number in a range (fractions too). */
export interface NumberSchema extends Base<number> {
  readonly kind: 'number';
  readonly minimum: number;
  readonly maximum: number;
}

export interface ConstSchema<T extends string> extends Base<T> {
  readonly kind: 'const';
  readonly value: T;
}

export interface AnyOfSchema<T> extends Base<T> {
  readonly kind: 'anyOf';
  readonly options: readonly Schema[];
  /** What a value must be, for the message (`a string or an integer`). */
  readonly expected: string;
}

export interface ObjectSchema<T> extends Base<T> {
  readonly kind: 'object';
  readonly properties: Readonly<Record<string, Schema>>;
  readonly required: readonly string[];
}

export type Schema = TextSchema | IntegerSchema | NumberSchema | ConstSchema<string> | AnyOfSchema<unknown> | ObjectSchema<unknown>;

export type Infer<S> = S extends Base<infer T> ? T : never;

/** Keys refused anywhere in a message: they reach for an object's prototype. */
export const RESERVED_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];
/** How deep a message may nest (the message itself is level 1). */
export const MAX_DEPTH = 8;

export function text(minLength: number, maxLength: number, description?: string, form?: TextSchema['form']): TextSchema {
  return { kind: 'text', minLength, maxLength, ...(description === undefined ? {} : { description }), ...(form === undefined ? {} : { form }) };
}

const patterns = new Map<string, RegExp>();
function regex(pattern: string): RegExp {
  let r = patterns.get(pattern);
  if (r === undefined) patterns.set(pattern, (r = new RegExp(pattern, 'u')));
  return r;
}

export function integer(minimum = -Number.MAX_SAFE_INTEGER, maximum = Number.MAX_SAFE_INTEGER, description?: string): IntegerSchema {
  return { kind: 'integer', minimum, maximum, ...(description === undefined ? {} : { description }) };
}

export function number(minimum: number, maximum: number, description?: string): NumberSchema {
  return { kind: 'number', minimum, maximum, ...(description === undefined ? {} : { description }) };
}

export function constant<T extends string>(value: T): ConstSchema<T> {
  return { kind: 'const', value };
}

export function anyOf<S extends readonly Schema[]>(expected: string, options: S, description?: string): AnyOfSchema<Infer<S[number]>> {
  return { kind: 'anyOf', options, expected, ...(description === undefined ? {} : { description }) };
}

type Props = Readonly<Record<string, Schema>>;
type ObjectOf<P extends Props, R extends keyof P> = { [K in R]: Infer<P[K]> } & { [K in Exclude<keyof P, R>]?: Infer<P[K]> };

export function object<P extends Props, R extends keyof P & string = never>(properties: P, required: readonly R[] = [], description?: string): ObjectSchema<ObjectOf<P, R>> {
  return { kind: 'object', properties, required, ...(description === undefined ? {} : { description }) };
}

const SAFE = Number.MAX_SAFE_INTEGER;

function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  if (typeof value === 'object') return 'an object';
  if (typeof value === 'string') return 'a string';
  return `a ${typeof value}`;
}

/** A path segment as people read it: `a.b`, `a[3]`, or a quoted key where the name is unusual. */
export function fieldPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  const name = /^[A-Za-z0-9_$-]{1,64}$/.test(key) ? key : `[${JSON.stringify(key.length > 64 ? `${key.slice(0, 64)}…` : key)}]`;
  if (parent === '') return name;
  return name.startsWith('[') ? `${parent}${name}` : `${parent}.${name}`;
}

function invalid(field: string, message: string): { ok: false } & Invalid {
  return { ok: false, field, message: `field "${field}" ${message}` };
}

/**
 * What is wrong with a string as a name or text, or null: a lone surrogate or
 * a control character (C0, DEL, C1) with its position, or its length in
 * characters (code points).
 */
export function textProblem(s: string, minLength: number, maxLength: number): string | null {
  let chars = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (next < 0xdc00 || next > 0xdfff) return `is not well-formed Unicode: a lone surrogate (U+${c.toString(16).toUpperCase()}) at character ${chars + 1}`;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) {
      return `is not well-formed Unicode: a lone surrogate (U+${c.toString(16).toUpperCase()}) at character ${chars + 1}`;
    } else if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
      return `must not contain control characters (U+${c.toString(16).toUpperCase().padStart(4, '0')} at character ${chars + 1})`;
    }
    chars++;
    if (chars > maxLength) break;
  }
  if (chars < minLength || chars > maxLength) return lengthRule(minLength, maxLength);
  return null;
}

function lengthRule(minLength: number, maxLength: number): string {
  return minLength === 0 ? `must be a string of at most ${maxLength} characters` : `must be a string of ${minLength} to ${maxLength} characters`;
}

function integerRule(s: IntegerSchema): string {
  return s.minimum === -SAFE && s.maximum === SAFE ? 'must be an integer' : `must be an integer from ${s.minimum} to ${s.maximum}`;
}

/** Where a value sits in a message; its path is spelled out only when a refusal needs it. */
interface Place {
  readonly parent: Place | null;
  readonly key: string | number;
}

function pathOf(place: Place | null): string {
  if (place === null) return '';
  return fieldPath(pathOf(place.parent), place.key);
}

function invalidAt(place: Place | null, message: string): { ok: false } & Invalid {
  return invalid(place === null ? 'body' : pathOf(place), message);
}

/** Checks a parsed JSON value against a schema; the first wrong field is named (`body` for the value itself). */
export function validate<S extends Schema>(schema: S, value: unknown, field = ''): Checked<Infer<S>> {
  return check(schema, value, field === '' ? null : { parent: null, key: field }) as Checked<Infer<S>>;
}

function check(schema: Schema, value: unknown, place: Place | null): Checked<unknown> {
  switch (schema.kind) {
    case 'text': {
      if (typeof value !== 'string') return invalidAt(place, `${lengthRule(schema.minLength, schema.maxLength)}, not ${typeName(value)}`);
      const problem = textProblem(value, schema.minLength, schema.maxLength);
      if (problem !== null) return invalidAt(place, problem);
      if (schema.form !== undefined && !regex(schema.form.pattern).test(value)) return invalidAt(place, `must be ${schema.form.means}`);
      return { ok: true, value };
    }
    case 'integer': {
      if (typeof value === 'number' && !Number.isFinite(value)) return invalidAt(place, 'holds a number too large to represent');
      if (typeof value !== 'number' || !Number.isInteger(value)) return invalidAt(place, `${integerRule(schema)}, not ${typeof value === 'number' ? String(value) : typeName(value)}`);
      if (value < schema.minimum || value > schema.maximum) return invalidAt(place, schema.minimum === -SAFE && schema.maximum === SAFE ? `must be an integer from ${-SAFE} to ${SAFE}` : integerRule(schema));
      return { ok: true, value };
    }
    case 'number': {
      if (typeof value === 'number' && !Number.isFinite(value)) return invalidAt(place, 'holds a number too large to represent');
      const rule = `must be a number from ${schema.minimum} to ${schema.maximum}`;
      if (typeof value !== 'number') return invalidAt(place, `${rule}, not ${typeName(value)}`);
      if (value < schema.minimum || value > schema.maximum) return invalidAt(place, rule);
      return { ok: true, value };
    }
    case 'const':
      return value === schema.value ? { ok: true, value } : invalidAt(place, `must be ${JSON.stringify(schema.value)}`);
    case 'anyOf': {
      for (const option of schema.options) {
        const r = check(option, value, place);
        if (r.ok) return r;
      }
      if (typeof value === 'number' && !Number.isFinite(value)) return invalidAt(place, 'holds a number too large to represent');
      return invalidAt(place, `must be ${schema.expected}`);
    }
    case 'object': {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) return invalidAt(place, `must be an object, not ${typeName(value)}`);
      const input = value as Record<string, unknown>;
      // Only the known properties are kept: nothing else a client sent reaches the handlers.
      const out: Record<string, unknown> = {};
      for (const name in schema.properties) {
        const v = Object.hasOwn(input, name) ? input[name] : undefined;
        if (v === undefined || v === null) {
          if (schema.required.includes(name)) return invalidAt({ parent: place, key: name }, 'is required');
          continue;
        }
        const r = check(schema.properties[name]!, v, { parent: place, key: name });
        if (!r.ok) return r;
        out[name] = r.value;
      }
      return { ok: true, value: out };
    }
  }
}

/**
 * What no message may hold anywhere, known field or not: reserved keys
 * (`__proto__`, `constructor`, `prototype`), nesting deeper than MAX_DEPTH,
 * numbers too large to represent (`1e999` parses as Infinity). Walks without
 * recursion, so a hostile nesting cannot exhaust the stack.
 */
export function checkDocument(value: unknown): Invalid | null {
  const tooLarge = (place: Place | null): Invalid => {
    const field = pathOf(place);
    return { field, message: `field "${field}" holds a number too large to represent` };
  };
  if (typeof value === 'number') return Number.isFinite(value) ? null : tooLarge(null);
  if (typeof value !== 'object' || value === null) return null;
  // Containers still to look into, with where they are and how deep.
  const stack: Array<{ value: object; place: Place | null; depth: number }> = [{ value, place: null, depth: 1 }];
  while (stack.length > 0) {
    const { value: container, place, depth } = stack.pop()!;
    if (depth > MAX_DEPTH) {
      const field = pathOf(place);
      return { field, message: `field "${field}" nests deeper than ${MAX_DEPTH} levels` };
    }
    const array = Array.isArray(container);
    const keys: ReadonlyArray<string | number> = array ? container.map((_, i) => i) : Object.keys(container);
    for (const key of keys) {
      if (!array && RESERVED_KEYS.includes(key as string)) {
        const field = pathOf({ parent: place, key });
        return { field, message: `field "${field}" is not allowed: ${RESERVED_KEYS.join(', ')} are reserved names` };
      }
    }
    for (let i = keys.length - 1; i >= 0; i--) {
      const key = keys[i]!;
      const v = (container as Record<string | number, unknown>)[key];
      if (typeof v === 'number') {
        if (!Number.isFinite(v)) return tooLarge({ parent: place, key });
      } else if (typeof v === 'object' && v !== null) {
        stack.push({ value: v, place: { parent: place, key }, depth: depth + 1 });
      }
    }
  }
  return null;
}

export type ParsedJson = { readonly ok: true; readonly value: unknown } | ({ readonly ok: false } & Invalid);

/** JSON text to a value that passed `checkDocument`, or what is wrong (`body` when the text is not JSON). */
export function parseJson(textValue: string): ParsedJson {
  let value: unknown;
  try {
    value = JSON.parse(textValue);
  } catch (err) {
    return { ok: false, field: 'body', message: `invalid JSON: ${(err as Error).message}` };
  }
  const problem = checkDocument(value);
  return problem === null ? { ok: true, value } : { ok: false, ...problem };
}

/** A control character or a lone surrogate, in the pattern syntax of JSON Schema (ECMA-262 with the `u` flag). */
export const TEXT_PATTERN = '^[^\\p{Cc}\\p{Cs}]*$';

/**
 * The JSON Schema (draft 2020-12 / OpenAPI 3.1) of a schema: the same types,
 * lengths, ranges, required fields and character rules. The rules of
 * `checkDocument` hold for every message besides and are stated in the docs.
 */
export function toJsonSchema(schema: Schema, nullable = false): Record<string, unknown> {
  const described = schema.description === undefined ? {} : { description: schema.description };
  switch (schema.kind) {
    case 'text':
      return { type: nullable ? ['string', 'null'] : 'string', minLength: schema.minLength, maxLength: schema.maxLength, pattern: schema.form?.pattern ?? TEXT_PATTERN, ...described };
    case 'integer':
      return { type: nullable ? ['integer', 'null'] : 'integer', minimum: schema.minimum, maximum: schema.maximum, ...described };
    case 'number':
      return { type: nullable ? ['number', 'null'] : 'number', minimum: schema.minimum, maximum: schema.maximum, ...described };
    case 'const':
      return nullable ? { anyOf: [{ type: 'string', const: schema.value }, { type: 'null' }], ...described } : { type: 'string', const: schema.value, ...described };
    case 'anyOf':
      return { anyOf: [...schema.options.map((o) => toJsonSchema(o)), ...(nullable ? [{ type: 'null' }] : [])], ...described };
    case 'object': {
      const properties: Record<string, unknown> = {};
      for (const [name, s] of Object.entries(schema.properties)) properties[name] = toJsonSchema(s, !schema.required.includes(name));
      return {
        type: nullable ? ['object', 'null'] : 'object',
        ...(schema.required.length > 0 ? { required: [...schema.required] } : {}),
        properties,
        ...described,
      };
    }
  }
}
