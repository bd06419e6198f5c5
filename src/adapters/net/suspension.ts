/**
 * Which of a server's listeners are suspended for maintenance: they take no
 * new lease connections (or leases), while open ones carry on.
 */
export class Suspension {
  private readonly suspended = new Set<string>();

  constructor(private readonly listeners: readonly string[]) {}

  /** Suspends the named listeners (all when none named); returns every name suspended now. */
  suspend(names: readonly string[] | null): string[] {
    for (const name of this.listeners) if (names === null || names.includes(name)) this.suspended.add(name);
    return [...this.suspended];
  }

  resume(names: readonly string[] | null): string[] {
    for (const name of [...this.suspended]) if (names === null || names.includes(name)) this.suspended.delete(name);
    return [...this.suspended];
  }

  has(name: string): boolean {
    return this.suspended.has(name);
  }
}
