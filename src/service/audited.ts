/**
 * A write operation run and accounted for: the manager (for API callers) and
 * tokenctl (for host root) both run every change through here, so each one
 * lands in the audit trail with who asked, from where, what and how it ended.
 * The record is appended after the store answered, outside its locks; a
 * trail that cannot be written never turns an applied change into a failure
 * (the caller relies on the answer), it is reported to `onAuditFailure`.
 *
 * In multi-host mode the storage also records each change in the cluster's
 * trail, in the change's own etcd transaction (src/cluster/audit.ts); the
 * host's record then names the revision, and refusals (which change nothing)
 * are in the host's trail only.
 */
import { type AuditRecord, type AuditTrail, auditChanges, auditTarget } from '../audit/trail.js';
import { errorCode, httpFailureOf } from '../http/status.js';
import {
  type Caller,
  runWrite,
  type Stores,
  type WriteContext,
  type WriteOperation,
} from './operations.js';
import { HOST_ROOT } from './rules.js';
import { type AccessStorage, isAuditing, type RecordingStorage } from './storage.js';

export interface AuditContext {
  trail: AuditTrail;
  /** The client's address, or what ran the change on the host. */
  source: string;
  onAuditFailure(error: unknown): void;
}

/** The actor a record names: the authenticated id, or host root for tokenctl. */
export function actorOf(caller: Caller | null): string {
  if (caller === HOST_ROOT) return 'host root';
  return caller?.authid ?? '(unauthenticated)';
}

/** Who, from where, what: the part of a record known before the operation runs. */
export function auditEventOf(
  audit: Pick<AuditContext, 'source'>,
  op: string,
  caller: Caller | null,
  params: Record<string, unknown>,
) {
  return {
    actor: actorOf(caller),
    source: audit.source,
    op,
    target: auditTarget(params),
    changes: auditChanges(params),
  };
}

/**
 * The storage one operation runs on: in multi-host mode one that records
 * each of its changes in the cluster's trail; null for the files.
 */
export function recordingStorage(
  audit: Pick<AuditContext, 'source'>,
  stores: AccessStorage,
  op: string,
  caller: Caller | null,
  params: Record<string, unknown>,
): RecordingStorage | null {
  return isAuditing(stores) ? stores.recording(auditEventOf(audit, op, caller, params)) : null;
}

/** Appends the record of one operation's outcome; never throws. */
export async function recordOutcome(
  audit: AuditContext,
  op: string,
  caller: Caller | null,
  params: Record<string, unknown>,
  error?: unknown,
  revision?: number,
): Promise<AuditRecord | null> {
  const failure = error === undefined ? null : httpFailureOf(error);
  try {
    return await audit.trail.append({
      ...auditEventOf(audit, op, caller, params),
      outcome: failure === null ? 'ok' : failure.status >= 500 ? 'failed' : 'refused',
      ...(failure === null ? {} : { status: failure.status, code: errorCode(error) }),
      ...(revision === undefined ? {} : { revision }),
    });
  } catch (appendError) {
    audit.onAuditFailure(appendError);
    return null;
  }
}

/** runWrite, with its outcome (success or refusal) in the audit trail. */
export async function runAudited<P, R>(
  audit: AuditContext | null,
  op: WriteOperation<P, R>,
  stores: Stores,
  caller: Caller,
  params: P,
  context: WriteContext = {},
): Promise<R> {
  if (audit === null) return runWrite(op, stores, caller, params, context);
  const raw = params as Record<string, unknown>;
  const recording = recordingStorage(audit, stores, op.name, caller, raw);
  try {
    const data = await runWrite(op, recording ?? stores, caller, params, context);
    await recordOutcome(audit, op.name, caller, raw, undefined, recording?.recorded.at(-1));
    return data;
  } catch (error) {
    await recordOutcome(audit, op.name, caller, raw, error, recording?.recorded.at(-1));
    throw error;
  }
}
