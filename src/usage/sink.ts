/**
 * Where the manager keeps what its workers reported. Today that is one sink,
 * the local file (LastUsedFileSink). With several hosts (src/cluster, etcd), a
 * second sink is meant to put this host's batch under its own key, one put per
 * batch per host, and readers take the latest second per token over all hosts;
 * the ledger already hands every sink both the whole view and the changes.
 */

export interface LastUsedBatch {
  /** Epoch second since which uses are recorded on this host. */
  readonly since: number;
  /** Token id -> last use, every token this host knows of. */
  readonly all: ReadonlyMap<string, number>;
  /** The entries that changed since the previous batch given to the sinks. */
  readonly changed: ReadonlyMap<string, number>;
}

export interface LastUsedSink {
  /** Called at most once per batch interval, never concurrently; a rejection keeps the changes for the next call. */
  write(batch: LastUsedBatch): Promise<void>;
}
