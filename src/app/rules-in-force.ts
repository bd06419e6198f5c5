import type { RulesSettings } from '../config/config.js';
import type { Clock } from '../domain/clock.js';
import { FloatdError } from '../domain/errors.js';
import { OPEN_GATE } from '../domain/gate.js';
import type { LeaseStore } from '../domain/ports.js';
import { RuleGate } from '../domain/rules/rule-gate.js';
import type { Logger } from '../adapters/log/logger.js';
import type { LeaseService } from './lease-service.js';
import type { RulesReloadReply } from '../domain/admin-replies.js';
import { loadRules, type FileError, type LoadedRules } from './rules.js';

export type RulesReload = RulesReloadReply;

/** The CLT rules and groups in force: the lease service's gate, reloaded on SIGHUP and `floatd rules reload`. */
export class RulesInForce {
  private rules: LoadedRules;

  constructor(
    rules: LoadedRules,
    private readonly deps: {
      readonly settings: () => RulesSettings;
      readonly leases: LeaseService;
      readonly store: Pick<LeaseStore, 'appendEvent'>;
      readonly clock: Clock;
      readonly logger: Logger;
      /** The rules changed: status shows them, and so does the runtime record. */
      readonly changed: () => void;
    },
  ) {
    this.rules = rules;
    this.apply(rules);
  }

  current(): LoadedRules {
    return this.rules;
  }

  /** The groups a user belongs to. */
  groupsOf(user: string): readonly string[] {
    return this.rules.groups.get(user) ?? [];
  }

  /**
   * Re-reads the rules and groups. A file with errors is refused and the rules
   * in force stay; either way the outcome is logged and recorded in the lease log.
   */
  async reload(): Promise<RulesReload> {
    const { clock, logger, store } = this.deps;
    const now = clock.now();
    try {
      const rules = loadRules(this.deps.settings());
      this.apply(rules);
      logger.info({ rules: rules.book?.size ?? 0 }, `rules reloaded: ${rules.summary}`);
      await store.appendEvent({ ts: now, event: 'rules-reloaded', message: rules.summary });
      return { ok: true, summary: rules.summary };
    } catch (err) {
      if (!(err instanceof FloatdError)) throw err;
      const errors = (err.details.errors as FileError[] | undefined) ?? [];
      logger.error({ code: err.code, errors }, `rules reload refused, the previous rules stay in force: ${err.message}`);
      await store.appendEvent({ ts: now, event: 'rules-rejected', code: err.code, message: err.message });
      return { ok: false, message: err.message, errors };
    }
  }

  private apply(rules: LoadedRules): void {
    this.rules = rules;
    this.deps.leases.setGate(rules.book === null ? OPEN_GATE : new RuleGate(rules.book));
    this.deps.changed();
  }
}
