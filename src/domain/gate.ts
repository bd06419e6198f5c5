import type { ClientIdentity } from './lease.js';
import type { RuleUsage } from './ports.js';

export type GateVerdict =
  | { readonly allowed: true; readonly logAll: boolean }
  | { readonly allowed: false; readonly reason: 'count' | 'frequency' | 'blocked'; readonly message: string };

/**
 * A check every new acquisition passes before it may take a seat (CLT rules).
 * Runs inside the acquire's unit of work so its counts are the durable ones.
 */
export interface AcquireGate {
  check(who: ClientIdentity, product: string, now: number, usage: RuleUsage): Promise<GateVerdict>;
}

export const OPEN_GATE: AcquireGate = {
  check: () => Promise.resolve({ allowed: true, logAll: false }),
};
