/** A cancellable scheduled callback. */
export interface TimerHandle {
  cancel(): void;
}

/**
 * The only way the rest of floatd learns the time. `now()` is wall-clock epoch
 * milliseconds (lease expiry is stored durably, so it must survive restarts);
 * `monotonic()` only ever moves forward and is used to measure durations.
 */
export interface Clock {
  now(): number;
  monotonic(): number;
  setTimer(delayMs: number, fn: () => void): TimerHandle;
}
