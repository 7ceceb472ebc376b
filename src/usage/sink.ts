/**
 * Where the manager keeps what its workers reported: the local file
 * (LastUsedFileSink) always, and in multi-host mode this host's record in
 * etcd too (src/cluster/usage-sink.ts), which also brings back what the other
 * hosts recorded, so that every host's file shows the latest use anywhere.
 */
import type { LastUse } from './notes.js';

export interface LastUsedBatch {
  /** Epoch second since which uses are recorded on this host. */
  readonly since: number;
  /** Token id -> last use, every token this host knows of (other hosts' uses included, with their host). */
  readonly all: ReadonlyMap<string, LastUse>;
  /**
   * The entries this host's workers changed since the previous batch given to
   * the sinks; uses gathered from other hosts are in `all` only.
   */
  readonly changed: ReadonlyMap<string, LastUse>;
}

export interface LastUsedSink {
  /** Called at most once per batch interval, never concurrently; a rejection keeps the changes for the next call. */
  write(batch: LastUsedBatch): Promise<void>;
  /**
   * Uses recorded elsewhere (other hosts), asked for at every batch before the
   * write, whether or not this host has anything new; the ledger merges the
   * ones that are newer. A rejection is logged and the batch goes on without.
   */
  gather?(): Promise<Iterable<readonly [tokenid: string, use: LastUse]>>;
  /** True while the sink holds something of its own not yet stored: the next batch writes. */
  readonly pending?: boolean;
}
