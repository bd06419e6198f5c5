/** A rate: `perSecond` on average, up to `burst` at once. */
export interface RateLimit {
  readonly perSecond: number;
  readonly burst: number;
}

/**
 * Token buckets, one per key (a client address): each holds up to `burst`
 * tokens and refills at `perSecond`; a request takes one. Keeps at most
 * `maxKeys` buckets: past that, full ones (which a new bucket would equal)
 * are forgotten first, then the table starts afresh.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    readonly limit: RateLimit,
    private readonly maxKeys = 100_000,
  ) {}

  /** Takes a token for `key` at `monotonicMs`: null if there was one, else the ms until there is. */
  take(key: string, monotonicMs: number): number | null {
    const { perSecond, burst } = this.limit;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) this.forget(monotonicMs);
      bucket = { tokens: burst, at: monotonicMs };
      this.buckets.set(key, bucket);
    } else {
      bucket.tokens = Math.min(burst, bucket.tokens + (Math.max(0, monotonicMs - bucket.at) * perSecond) / 1000);
      bucket.at = monotonicMs;
    }
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return null;
    }
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * 1000) / perSecond));
  }

  private forget(monotonicMs: number): void {
    const { perSecond, burst } = this.limit;
    for (const [key, b] of this.buckets) {
      if (b.tokens + ((monotonicMs - b.at) * perSecond) / 1000 >= burst) this.buckets.delete(key);
    }
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}
