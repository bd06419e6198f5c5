/**
 * Frequency periods of the CLT language (CLT-RULES.md section 2): a unit word
 * or unit letter in any letter case, a number-led time (`1h30m`, `1.5s`) or an
 * ISO-8601 duration (`PT5M7.5S`, `P1DT1M`). Number-led times read as ISO
 * durations with `PT` in front, which is what makes `1s1m` (wrong order) and
 * `1.5m` (fraction not on seconds) invalid.
 */

export type PeriodResult =
  | { readonly ok: true; readonly ms: number }
  | { readonly ok: false; readonly kind: 'invalid-period' | 'negative-period'; readonly message: string };

// Maps, not object literals: a lookup in an object also finds `constructor`, `toString`…
const UNIT_WORDS = new Map([
  ['second', 1000],
  ['minute', 60_000],
  ['hour', 3_600_000],
]);
const UNIT_LETTERS = new Map([
  ['s', 1000],
  ['m', 60_000],
  ['h', 3_600_000],
]);

const ISO = /^([-+]?)P(?:([-+]?\d+)D)?(T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?(?:([-+]?\d+)(?:[.,](\d{0,9}))?S)?)?$/i;

const FORMS = 'second, minute, hour, s, m, h, a time like 90s or 1h30m, or an ISO-8601 duration like PT5M or P1D';

function invalid(text: string, why = `use ${FORMS}`): PeriodResult {
  return { ok: false, kind: 'invalid-period', message: `"${text}" is not a period: ${why}` };
}

function signed(part: string | undefined): number {
  return part === undefined ? 0 : Number(part);
}

/** Parses an ISO-8601 duration of days, hours, minutes and seconds, as java.time.Duration does. */
function parseIso(iso: string, shown: string): PeriodResult {
  const m = ISO.exec(iso);
  if (m === null) return invalid(shown);
  const [, sign, days, t, hours, minutes, seconds, fraction] = m;
  if (days === undefined && hours === undefined && minutes === undefined && seconds === undefined) return invalid(shown);
  if (t !== undefined && hours === undefined && minutes === undefined && seconds === undefined) return invalid(shown);
  const secondsSign = seconds?.startsWith('-') ? -1 : 1;
  const fractionMs = fraction ? (Number(`0.${fraction}`) * 1000 * secondsSign) : 0;
  let ms = signed(days) * 86_400_000 + signed(hours) * 3_600_000 + signed(minutes) * 60_000 + signed(seconds) * 1000 + fractionMs;
  if (sign === '-') ms = -ms;
  if (!Number.isFinite(ms) || Math.abs(ms) > Number.MAX_SAFE_INTEGER) return invalid(shown, 'it is too long');
  if (ms < 0) return { ok: false, kind: 'negative-period', message: `the period "${shown}" is negative` };
  const rounded = Math.round(ms);
  if (rounded === 0) return invalid(shown, ms === 0 ? 'a period must be longer than zero' : 'a period must be at least 1 ms');
  return { ok: true, ms: rounded };
}

export function parsePeriod(text: string): PeriodResult {
  const lower = text.toLowerCase();
  const unit = UNIT_WORDS.get(lower) ?? UNIT_LETTERS.get(lower);
  if (unit !== undefined) return { ok: true, ms: unit };
  if (/^[-+]?\d/.test(text)) return parseIso(`PT${text}`, text);
  if (/^[-+]?P/i.test(text)) return parseIso(text, text);
  return invalid(text);
}

/** `120000` → `120 s`, `1500` → `1.5 s`: how periods appear in messages. */
export function describePeriod(ms: number): string {
  return `${ms / 1000} s`;
}
