/**
 * The audit trail: one JSON line per change to users, tokens, groups, roles,
 * ACLs and pools, whatever made it (the manager for the API, tokenctl for
 * host root), in `<config-dir>/audit/`. Append-only and tamper-evident: each
 * record carries the SHA-256 of its own text and the hash of the record
 * before it, so removing or editing a record breaks the chain at that point,
 * across rotated files too (the first record of a file chains to the last of
 * the one before). `head` holds the last record's sequence and hash, so
 * records cut from the end are seen as well.
 *
 * A record is written after the change was answered by the store (no
 * user.cfg or token.shadow lock is held meanwhile, and the request path never
 * writes here); a crash between the change and its record loses that record,
 * which `verify` cannot see. Records never hold a secret or a hash: the
 * fields that carry one are replaced by "(redacted)" before anything else.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { AuditError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic.js';
import { withFileLock } from '../files/lock.js';

/** Who asked for a change, from where, and what became of it. */
export interface AuditEvent {
  /** The authenticated id, or `host root` for tokenctl run by root on the host. */
  actor: string;
  /** The client's address for the API, `tokenctl` (with uid and pid) for host root. */
  source: string;
  /** The operation's stable name (`token.delete`, `user.update`...). */
  op: string;
  /** What it names: a user, token, group, role, pool or ACL path. */
  target: string | null;
  /** The parameters besides the target's ids, secrets redacted. */
  changes: Record<string, unknown>;
  outcome: 'ok' | 'refused' | 'failed';
  /** The HTTP status of a refusal, and its stable error code. */
  status?: number;
  code?: string;
  /** The etcd revision of the change in multi-host mode. */
  revision?: number;
}

export interface AuditRecord extends AuditEvent {
  seq: number;
  /** ISO 8601, UTC. */
  time: string;
  host: string;
  /** The hash of the record before (64 zeros for the first). */
  prev: string;
  /** SHA-256 (hex) of this line's JSON without `hash`. */
  hash: string;
}

export const GENESIS = '0'.repeat(64);
/** A file is rotated once it passes this size (the next record starts a new file). */
export const DEFAULT_ROTATE_BYTES = 16 * 1024 * 1024;
const HEAD = 'head';
const FILE_PATTERN = /^(\d{12})\.log$/;
const REDACTED_KEYS = new Set(['password', 'keys', 'value', 'secret', 'hash', 'credential']);

/** `params` without what names the target, every secret-bearing field redacted. */
export function auditChanges(params: Record<string, unknown>): Record<string, unknown> {
  const ids = new Set(['userid', 'tokenName', 'groupid', 'poolid', 'roleid', 'path']);
  const redact = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(redact);
    if (value === null || typeof value !== 'object') return value;
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([key, inner]) => [
        key,
        REDACTED_KEYS.has(key) ? '(redacted)' : redact(inner),
      ]),
    );
  };
  const rest = Object.fromEntries(Object.entries(params).filter(([key]) => !ids.has(key)));
  return redact(rest) as Record<string, unknown>;
}

/** The target an operation's params name, as the manager's log has always said it. */
export function auditTarget(params: Record<string, unknown>): string | null {
  if (typeof params.tokenName === 'string') return `${params.userid}!${params.tokenName}`;
  for (const key of ['userid', 'groupid', 'poolid', 'roleid', 'path']) {
    if (typeof params[key] === 'string') return params[key] as string;
  }
  return null;
}

/** SHA-256 (hex) of a record's JSON without its hash (the cluster's trail chains the same way). */
export function hashOf(body: object): string {
  return createHash('sha256').update(JSON.stringify(body)).digest('hex');
}

function fileName(firstSeq: number): string {
  return `${String(firstSeq).padStart(12, '0')}.log`;
}

/** The trail's files, oldest first. */
async function trailFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return names.filter((n) => FILE_PATTERN.test(n)).sort();
}

interface Head {
  seq: number;
  hash: string;
}

async function readHead(dir: string): Promise<Head | null> {
  try {
    const head = JSON.parse(await readFile(path.join(dir, HEAD), 'utf8')) as Head;
    if (!Number.isSafeInteger(head.seq) || !/^[0-9a-f]{64}$/.test(head.hash)) return null;
    return head;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    if (error instanceof SyntaxError) return null;
    throw error;
  }
}

export interface AuditTrailOptions {
  dir: string;
  host: string;
  rotateBytes?: number;
  /** Each record as it was written (the daemons log it; tokenctl sends it to syslog). */
  onRecord?: (record: AuditRecord) => void;
}

export class AuditTrail {
  readonly dir: string;
  readonly #host: string;
  readonly #rotateBytes: number;
  readonly #onRecord: ((record: AuditRecord) => void) | undefined;

  constructor(options: AuditTrailOptions) {
    this.dir = options.dir;
    this.#host = options.host;
    this.#rotateBytes = options.rotateBytes ?? DEFAULT_ROTATE_BYTES;
    this.#onRecord = options.onRecord;
  }

  /** Appends `event` as the next record, durably (fsynced), under the trail's own lock. */
  async append(event: AuditEvent, now = new Date()): Promise<AuditRecord> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const record = await withFileLock(path.join(this.dir, 'trail'), async (assertHeld) => {
      const head = (await readHead(this.dir)) ?? (await this.#lastRecord());
      const files = await trailFiles(this.dir);
      const seq = (head?.seq ?? 0) + 1;
      const body: Omit<AuditRecord, 'hash'> = {
        seq,
        time: now.toISOString(),
        host: this.#host,
        ...event,
        prev: head?.hash ?? GENESIS,
      };
      const full: AuditRecord = { ...body, hash: hashOf(body) };
      let file = files.at(-1);
      if (file === undefined || (await stat(path.join(this.dir, file))).size >= this.#rotateBytes) {
        file = fileName(seq);
      }
      assertHeld();
      const handle = await open(path.join(this.dir, file), 'a', 0o600);
      try {
        await handle.write(`${JSON.stringify(full)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await writeFileAtomic(
        path.join(this.dir, HEAD),
        `${JSON.stringify({ seq, hash: full.hash })}\n`,
        { mode: 0o600 },
      );
      return full;
    });
    this.#onRecord?.(record);
    return record;
  }

  /** The last record of the newest file (when `head` is missing), or null for none. */
  async #lastRecord(): Promise<Head | null> {
    const files = await trailFiles(this.dir);
    for (const file of files.reverse()) {
      const lines = (await readFile(path.join(this.dir, file), 'utf8')).trimEnd().split('\n');
      const last = lines.at(-1);
      if (last) {
        try {
          const record = JSON.parse(last) as AuditRecord;
          return { seq: record.seq, hash: record.hash };
        } catch (error) {
          throw new AuditError('corrupt', `${file}: its last line is not a record`, {
            cause: error,
          });
        }
      }
    }
    return null;
  }

  /** The last record's sequence number (0 for an empty trail). */
  async head(): Promise<number> {
    return ((await readHead(this.dir)) ?? (await this.#lastRecord()))?.seq ?? 0;
  }

  /** The records after `seq`, oldest first (read only when there are any). */
  async *recordsAfter(seq: number): AsyncGenerator<AuditRecord> {
    if ((await this.head()) <= seq) return;
    for await (const record of this.records()) if (record.seq > seq) yield record;
  }

  /** Every record, oldest first (each line parsed; the chain is not checked: see verify). */
  async *records(): AsyncGenerator<AuditRecord> {
    for (const file of await trailFiles(this.dir)) {
      const text = await readFile(path.join(this.dir, file), 'utf8');
      for (const line of text.split('\n')) {
        if (line !== '') yield JSON.parse(line) as AuditRecord;
      }
    }
  }

  /**
   * Checks the whole chain: every record's hash, its link to the one before,
   * its sequence number, and `head` against the last record.
   */
  async verify(): Promise<AuditVerification> {
    let prev = GENESIS;
    let seq = 0;
    const files = await trailFiles(this.dir);
    for (const file of files) {
      const lines = (await readFile(path.join(this.dir, file), 'utf8')).split('\n');
      for (const [index, line] of lines.entries()) {
        if (line === '') continue;
        const where = `${file} line ${index + 1}`;
        let record: AuditRecord;
        try {
          record = JSON.parse(line) as AuditRecord;
        } catch {
          return { ok: false, records: seq, problem: `${where}: not a record` };
        }
        const { hash, ...body } = record;
        if (hashOf(body) !== hash) {
          return { ok: false, records: seq, problem: `${where} (seq ${record.seq}): altered` };
        }
        if (record.prev !== prev || record.seq !== seq + 1) {
          return {
            ok: false,
            records: seq,
            problem: `${where} (seq ${record.seq}): does not follow seq ${seq}: a record before it was removed or altered`,
          };
        }
        prev = hash;
        seq = record.seq;
      }
    }
    const head = await readHead(this.dir);
    if (head !== null && (head.seq !== seq || head.hash !== prev)) {
      return {
        ok: false,
        records: seq,
        problem: `the trail ends at seq ${seq} but its head says ${head.seq}: records were removed from the end`,
      };
    }
    return { ok: true, records: seq, files: files.length };
  }
}

export type AuditVerification =
  | { ok: true; records: number; files: number }
  | { ok: false; records: number; problem: string };
