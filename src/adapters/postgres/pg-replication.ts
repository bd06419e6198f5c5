/** A query of the replication views: one statement, its rows. */
export type ReplicationQuery = <R>(text: string) => Promise<R[]>;

/** The database's replication, for status and /readyz. */
export interface ReplicationState {
  readonly role: 'primary' | 'standby';
  readonly synchronousStandbyNames: string;
  readonly synchronousCommit: string;
  readonly standbys: ReadonlyArray<{ readonly name: string; readonly state: string | null; readonly syncState: string | null; readonly client: string | null }>;
  /** Commits wait for at least one streaming synchronous standby: a failover to it loses no acknowledged grant. */
  readonly synchronous: boolean;
}

/**
 * The database's replication as this node sees it: whether it is a
 * primary, which standbys stream from it and which of them are synchronous.
 * A primary without a synchronous standby can lose acknowledged grants when
 * it fails over (status warns, /readyz reports it). Seeing the standbys
 * needs the pg_monitor role (or pg_read_all_stats) for floatd's user.
 */
export async function readReplication(query: ReplicationQuery): Promise<ReplicationState> {
  const [s] = await query<{ standby: boolean; names: string; commit: string }>(
    "SELECT pg_is_in_recovery() AS standby, current_setting('synchronous_standby_names') AS names, current_setting('synchronous_commit') AS commit",
  );
  const standbys = (await query<{ name: string; state: string | null; sync_state: string | null; client: string | null }>(
    'SELECT application_name AS name, state, sync_state, client_addr::text AS client FROM pg_stat_replication ORDER BY application_name',
  )).map((r) => ({ name: r.name, state: r.state, syncState: r.sync_state, client: r.client }));
  const waits = s!.commit !== 'off' && s!.commit !== 'local' && s!.names.trim() !== '';
  const synchronous = waits && standbys.some((b) => b.state === 'streaming' && (b.syncState === 'sync' || b.syncState === 'quorum'));
  return { role: s!.standby ? 'standby' : 'primary', synchronousStandbyNames: s!.names, synchronousCommit: s!.commit, standbys, synchronous };
}
