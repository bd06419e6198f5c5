import type { ActivationState } from '../domain/activation.js';
import type { LicenseKey, LicenseValidity } from '../domain/license.js';
import type { LeaseStore } from '../domain/ports.js';

/**
 * How a license key stands as a whole: `valid` only when it can grant. A key
 * that is in its validity period but needs an activation it lacks (or whose
 * activation lapsed) has the activation's state instead, so no listing shows
 * it usable while every acquisition gets NOT_ACTIVATED.
 */
export const KEY_STATES = [
  'valid',
  'expired',
  'not-yet-valid',
  'not-activated',
  'deactivated',
  'binding-broken',
  'activation-invalid',
  'revalidation-overdue',
  'activation-unchecked',
] as const;
export type KeyState = (typeof KEY_STATES)[number];

/** The words tables show for each state. */
export const KEY_STATE_TEXT: Readonly<Record<KeyState, string>> = {
  valid: 'valid',
  expired: 'expired',
  'not-yet-valid': 'pending',
  'not-activated': 'not activated',
  deactivated: 'deactivated',
  'binding-broken': 'binding broken',
  'activation-invalid': 'activation invalid',
  'revalidation-overdue': 'revalidation overdue',
  'activation-unchecked': 'activation not checked yet',
};

/** The key's state from its validity and, for keys that need activation, the activation's state (undefined: not checked). */
export function keyState(validity: LicenseValidity['state'], needsActivation: boolean, activation: ActivationState | undefined): KeyState {
  if (validity !== 'valid' || !needsActivation) return validity;
  if (activation === undefined) return 'activation-unchecked';
  switch (activation.state) {
    case 'active':
      return 'valid';
    case 'hardware-changed':
      return 'binding-broken';
    case 'invalid':
      return 'activation-invalid';
    default:
      return activation.state;
  }
}

/** What to run about a key in this state, or null. */
export function keyAction(state: KeyState, keyId: string): string | null {
  switch (state) {
    case 'not-activated':
    case 'deactivated':
    case 'activation-invalid':
      return `floatd activate ${keyId}`;
    case 'binding-broken':
      return `floatd deactivate ${keyId} where it was activated, then floatd activate ${keyId} here`;
    case 'revalidation-overdue':
      return `let the server reach the activation service, or floatd activate ${keyId} --offline-request FILE`;
    default:
      return null;
  }
}

/** "not activated (run: floatd activate 3f2a…)", for tables. */
export function keyStateLabel(state: KeyState, keyId: string, notBefore: string | null = null): string {
  if (state === 'not-yet-valid') return `pending until ${notBefore ?? '?'}`;
  const action = keyAction(state, keyId);
  return action === null ? KEY_STATE_TEXT[state] : `${KEY_STATE_TEXT[state]} (run: ${action})`;
}

/**
 * Writes an `activation-changed` entry for each key whose activation state
 * differs from the one last written this run (so each run records every state
 * it starts with, and a key installed again records its state again): reports
 * take the seats a pool could grant from it.
 */
export async function recordActivationChanges(store: Pick<LeaseStore, 'appendEvent'>, recorded: Map<string, string>, keys: readonly LicenseKey[], stateOf: (keyId: string) => ActivationState | undefined, now: number): Promise<void> {
  const installed = new Set(keys.map((k) => k.id));
  for (const id of [...recorded.keys()]) if (!installed.has(id)) recorded.delete(id);
  for (const key of keys) {
    const state = stateOf(key.id);
    if (state === undefined || recorded.get(key.id) === state.state) continue;
    recorded.set(key.id, state.state);
    const grantable = state.state === 'active' ? key.seats : 0;
    await store.appendEvent({
      ts: now,
      event: 'activation-changed',
      poolId: key.id,
      product: key.product,
      seatsTotal: grantable,
      code: state.state,
      message: state.state === 'active' ? `license key ${key.id} is activated on this host: its ${key.seats} seat(s) can be granted` : `${state.message}; none of its ${key.seats} seat(s) can be granted`,
    });
  }
}
