/**
 * Lets one warning per key (a source address, say) through per period and
 * counts the ones held back, so a misconfigured or hostile peer cannot flood
 * the log. Keeps at most `maxKeys` keys: past that, keys whose period is over
 * are forgotten first, then the table starts afresh.
 */
export class WarningThrottle {
  private readonly last = new Map<string, { at: number; held: number }>();

  constructor(
    private readonly periodMs: number,
    private readonly maxKeys = 10_000,
  ) {}

  /** Whether to log now (with how many were held back since the last one for this key), or null to stay quiet. */
  admit(key: string, monotonicMs: number): { held: number } | null {
    const seen = this.last.get(key);
    if (seen !== undefined && monotonicMs - seen.at < this.periodMs) {
      seen.held++;
      return null;
    }
    if (seen === undefined && this.last.size >= this.maxKeys) this.forget(monotonicMs);
    this.last.set(key, { at: monotonicMs, held: 0 });
    return { held: seen?.held ?? 0 };
  }

  private forget(monotonicMs: number): void {
    for (const [key, seen] of this.last) if (monotonicMs - seen.at >= this.periodMs) this.last.delete(key);
    if (this.last.size >= this.maxKeys) this.last.clear();
  }
}
