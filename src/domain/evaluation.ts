/**
 * The evaluation's terms: the most there is comes from the built-in terms or
 * the vendor's product file; settings may only lower them.
 */
export const BUILT_IN_EVALUATION = { seats: 5, days: 30 } as const;

/** The most evaluation there is, and who says so ("built-in terms", "the product file of vendor key …"). */
export interface EvaluationLimit {
  readonly seats: number;
  readonly days: number;
  readonly by: string;
}

/** An evaluation setting the operator set: its value and where it came from. */
export interface EvaluationAsk {
  readonly value: number;
  /** "evaluation.seats (environment FLOATD_EVALUATION_SEATS)". */
  readonly setting: string;
}

export interface EvaluationTermsDecided {
  readonly seats: number;
  readonly days: number;
  /** Who set each: "built-in terms", "the product file of vendor key …", "lowered by setting evaluation.seats (…)". */
  readonly setBy: { readonly seats: string; readonly days: string };
  /** Settings that asked for more than the limit, and were held to it. */
  readonly clamped: ReadonlyArray<{ readonly setting: string; readonly asked: number; readonly limit: number; readonly by: string }>;
}

/**
 * The evaluation in force: a setting lower than the limit lowers it; one that
 * asks more is held to the limit (and reported), never raising it.
 */
export function decideEvaluationTerms(limit: EvaluationLimit, asked: { readonly seats: EvaluationAsk | null; readonly days: EvaluationAsk | null }): EvaluationTermsDecided {
  const clamped: Array<EvaluationTermsDecided['clamped'][number]> = [];
  const one = (what: 'seats' | 'days'): { value: number; by: string } => {
    const ask = asked[what];
    const max = limit[what];
    if (ask === null || ask.value === max) return { value: max, by: limit.by };
    if (ask.value < max) return { value: ask.value, by: `lowered by setting ${ask.setting}` };
    clamped.push({ setting: ask.setting, asked: ask.value, limit: max, by: limit.by });
    return { value: max, by: limit.by };
  };
  const seats = one('seats');
  const days = one('days');
  return { seats: seats.value, days: days.value, setBy: { seats: seats.by, days: days.by }, clamped };
}

