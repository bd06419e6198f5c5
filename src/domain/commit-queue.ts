/**
 * Work that may happen only once a transaction has committed: pushing a
 * `revoked` event to a client, counting a grant, waking the sweeper. Each
 * transaction level (a batch, a savepoint inside it) collects its own; a level
 * that commits hands its work to the level around it, the outermost one runs
 * it; a level that rolls back drops its work with its writes.
 */
export class CommitQueue {
  private readonly levels: Array<Array<() => void>> = [];

  constructor(private readonly onError: (err: unknown) => void) {}

  /** Runs `transaction` as one level; its queued work is kept only if it returns. */
  within<T>(transaction: () => T): T {
    this.levels.push([]);
    let result: T;
    try {
      result = transaction();
    } catch (err) {
      this.levels.pop();
      throw err;
    }
    const done = this.levels.pop()!;
    const parent = this.levels.at(-1);
    if (parent !== undefined) parent.push(...done);
    else this.run(done);
    return result;
  }

  /** Opens a level that spans awaits (a unit of work): end it with `end`, kept or not. */
  begin(): void {
    this.levels.push([]);
  }

  /** Ends the innermost level `begin` opened: its work goes to the level around it (or runs) if kept, else is dropped. */
  end(kept: boolean): void {
    const done = this.levels.pop()!;
    if (!kept) return;
    const parent = this.levels.at(-1);
    if (parent !== undefined) parent.push(...done);
    else this.run(done);
  }

  /** Queues `fn` for after the commit of the transaction in progress, or runs it now outside one. */
  afterCommit(fn: () => void): void {
    const level = this.levels.at(-1);
    if (level !== undefined) level.push(fn);
    else this.run([fn]);
  }

  private run(work: ReadonlyArray<() => void>): void {
    // The transaction is committed whatever a callback does: a failing one must not look like a failed commit.
    for (const fn of work) {
      try {
        fn();
      } catch (err) {
        this.onError(err);
      }
    }
  }
}
