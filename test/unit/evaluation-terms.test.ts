import { describe, expect, it } from 'vitest';
import { defaultEvaluationStateDir } from '../../src/config/evaluation-state-dir.js';
import { BUILT_IN_EVALUATION, decideEvaluationTerms } from '../../src/domain/evaluation.js';
import { testConfig } from '../support/helpers.js';

const builtIn = { ...BUILT_IN_EVALUATION, by: 'built-in terms' };

describe('evaluation terms', () => {
  it('settings lower the limit, never raise it; a setting that asks more is held and reported', () => {
    expect(decideEvaluationTerms(builtIn, { seats: null, days: null })).toEqual({ seats: 5, days: 30, setBy: { seats: 'built-in terms', days: 'built-in terms' }, clamped: [] });
    expect(decideEvaluationTerms(builtIn, { seats: { value: 100, setting: 'evaluation.seats (environment FLOATD_EVALUATION_SEATS)' }, days: { value: 7, setting: 'evaluation.days (command line)' } })).toEqual({
      seats: 5,
      days: 7,
      setBy: { seats: 'built-in terms', days: 'lowered by setting evaluation.days (command line)' },
      clamped: [{ setting: 'evaluation.seats (environment FLOATD_EVALUATION_SEATS)', asked: 100, limit: 5, by: 'built-in terms' }],
    });
    expect(decideEvaluationTerms({ seats: 20, days: 60, by: 'product file of vendor key k' }, { seats: { value: 0, setting: 'evaluation.seats (command line)' }, days: null })).toMatchObject({ seats: 0, days: 60, clamped: [] });
  });

  it('keeps the record outside the data directory: /var/lib/floatd-evaluation for root, else the XDG state folder; the setting overrides it', () => {
    const root = process.getuid?.() === 0;
    expect(defaultEvaluationStateDir({ XDG_STATE_HOME: '/x/state', HOME: '/home/a' })).toBe(root ? '/var/lib/floatd-evaluation' : '/x/state/floatd');
    expect(defaultEvaluationStateDir({ HOME: '/home/a' })).toBe(root ? '/var/lib/floatd-evaluation' : '/home/a/.local/state/floatd');
    expect(testConfig({ 'evaluation.stateDir': '/tmp/elsewhere' }).evaluationStateDir).toBe('/tmp/elsewhere');
  });
});
