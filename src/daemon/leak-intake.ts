/**
 * The manager's intake of leaked-secret reports (POST /access/leaked-secrets,
 * forwarded by an API worker without a credential as LEAK_REPORT_OP).
 *
 * A report is answered the same, status and body, whether or not a secret
 * matched, and its time does not tell either: before the answer the intake
 * (1) charges the reporter's source one unit of its budget per secret (429
 * past it), (2) checks every traceable secret against the hash of each token
 * its reference names, two hashes a candidate or two throwaway ones
 * (findLeakedTokens), and (3) appends a receipt to its journal and fsyncs
 * it, for every report, matched or not.
 * Only then does it answer; the revocations run after, from the journal, one
 * token at a time through the operation table's `token.revoke-leaked`
 * (audited as actor `leak-report` with the reporter's address, announced by
 * webhook). Their time (a write of user.cfg and token.shadow, or an etcd
 * transaction every host acknowledges) is the one that would tell a match,
 * and the answer never waits for it.
 *
 * Nothing acknowledged is lost: a receipt is on disk before its answer, and
 * a manager that stops or crashes before its revocations ran runs them when
 * it starts again. The journal holds token ids and the reporter's address,
 * never a secret; a receipt is done once each of its tokens is revoked (or
 * gone), and the journal is emptied whenever every receipt is done.
 *
 * The budget is the per-source machinery of the API's authentication
 * failures (src/http/source-penalties.ts) with the same budget and decay: a
 * reported secret costs two hashes where a failed authentication costs one,
 * the same order of work.
 * It is kept here, in the one process that sees every report of the host,
 * so it holds host-wide whatever the number of workers. A budget of 0 (the
 * API's penalties off) does not turn it off: the default applies.
 */
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditTrail } from '../audit/trail.js';
import { ApiError, ParameterError } from '../errors.js';
import { writeFileAtomic } from '../files/atomic.js';
import { DEFAULT_PENALTY_BUDGET } from '../http/penalty-defaults.js';
import { SourcePenalties } from '../http/source-penalties.js';
import { httpFailureOf } from '../http/status.js';
import { splitTokenid } from '../ids.js';
import { runAudited } from '../service/audited.js';
import {
  findLeakedTokens,
  LEAK_REPORTER,
  MAX_REPORTED_SECRET_LENGTH,
  MAX_REPORTED_SECRETS,
  revokeLeakedToken,
  type Stores,
} from '../service/operations.js';
import type { PenaltySettings } from '../service/settings.js';
import type { SecretVerifier } from '../shadow/secret-verifier.js';
import type { Logger } from './logger.js';

/** The manager's socket op a worker forwards a report as (no credential: anyone may report). */
export const LEAK_REPORT_OP = 'token.report-leaked';

/** What a report's receipt keeps: who reported, and the tokens its secrets proved. */
interface Receipt {
  seq: number;
  /** ISO 8601, UTC. */
  time: string;
  /** The reporter's address: the audit records' source. */
  source: string;
  /** Tokens whose current secret was reported, still to revoke (none: nothing matched). */
  tokens: string[];
}

interface State {
  /** The last receipt whose revocations are all done. */
  done: number;
}

export interface LeakIntakeOptions {
  /** Where the journal and its state are (`<config-dir>/leak-reports`, root's). */
  dir: string;
  stores: Stores;
  /** The host's token.shadow: the hashes the secrets are checked against. */
  shadow: SecretVerifier;
  trail: AuditTrail;
  penalties: PenaltySettings;
  log: Logger;
  /** Told of each token revoked here (its last use is forgotten). */
  onRevoked?: (tokenid: string) => void;
}

const FIRST_RETRY_MS = 1000;
const MAX_RETRY_MS = 60_000;

/** The secrets of a report as they crossed the socket; ParameterError when malformed. */
export function reportedSecrets(raw: Record<string, unknown>): string[] {
  const value = raw.secrets;
  if (
    !Array.isArray(value) ||
    value.length === 0 ||
    value.length > MAX_REPORTED_SECRETS ||
    !value.every(
      (item) =>
        typeof item === 'string' && item.length > 0 && item.length <= MAX_REPORTED_SECRET_LENGTH,
    )
  ) {
    throw new ParameterError(
      `secrets must be a list of 1 to ${MAX_REPORTED_SECRETS} strings of at most ${MAX_REPORTED_SECRET_LENGTH} characters`,
      { secrets: 'invalid' },
    );
  }
  return [...value];
}

export class LeakIntake {
  readonly #options: LeakIntakeOptions;
  readonly #budget: SourcePenalties;
  /** Receipts not yet done, oldest first. */
  #pending: Receipt[] = [];
  #state: State = { done: 0 };
  #lastSeq = 0;
  /** Every file operation in order: appends, state writes, the emptying of the journal. */
  #files: Promise<unknown> = Promise.resolve();
  #processing = false;
  #failures = 0;
  #retry: NodeJS.Timeout | undefined;
  #stopped = false;
  #idle: Array<() => void> = [];

  constructor(options: LeakIntakeOptions) {
    this.#options = options;
    const { penalties } = options;
    this.#budget = new SourcePenalties({
      budget: penalties.budget > 0 ? penalties.budget : DEFAULT_PENALTY_BUDGET,
      decayPerSecond: penalties.decayPerSecond,
      ipv4Prefix: penalties.ipv4Prefix,
      ipv6Prefix: penalties.ipv6Prefix,
    });
  }

  #journalPath() {
    return path.join(this.#options.dir, 'receipts.jsonl');
  }

  #statePath() {
    return path.join(this.#options.dir, 'state.json');
  }

  /** Loads the journal and starts the revocations a previous run left undone. */
  async open(): Promise<void> {
    await mkdir(this.#options.dir, { recursive: true, mode: 0o700 });
    try {
      this.#state = JSON.parse(await readFile(this.#statePath(), 'utf8')) as State;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.#lastSeq = this.#state.done;
    let text = '';
    try {
      text = await readFile(this.#journalPath(), 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    for (const line of text.split('\n')) {
      if (line === '') continue;
      let receipt: Receipt;
      try {
        receipt = JSON.parse(line) as Receipt;
      } catch {
        // A line torn by a crash mid-append was never acknowledged (its fsync had not returned).
        continue;
      }
      this.#lastSeq = Math.max(this.#lastSeq, receipt.seq);
      if (receipt.seq > this.#state.done) this.#pending.push(receipt);
    }
    // Rewritten whole: a line a crash tore (never acknowledged) must not swallow the next append,
    // and the file exists from now on, its directory entry synced, before anything is appended.
    const kept = this.#pending.map((receipt) => `${JSON.stringify(receipt)}\n`).join('');
    await writeFileAtomic(this.#journalPath(), kept, { mode: 0o600 });
    if (this.#pending.length > 0) {
      this.#options.log.info(
        { receipts: this.#pending.length },
        'leaked-secret reports received before a restart: revoking now',
      );
    }
    this.#kick();
  }

  /**
   * Takes a report from `client` (the reporter's address): charged, checked
   * and durably received when this resolves; ApiError 429 when its source
   * is past its budget.
   */
  async report(secrets: readonly string[], client: string): Promise<void> {
    const source = this.#budget.sourceOf(client);
    if (this.#budget.isPenalised(source)) {
      throw new ApiError(429, 'too many leaked-secret reports from this source; retry later');
    }
    for (let i = 0; i < secrets.length; i++) this.#budget.recordFailure(source);
    const { stores, shadow } = this.#options;
    const tokens = await findLeakedTokens(await stores.readConfig(), secrets, (tokenid, secret) =>
      shadow.verifyHashed(tokenid, secret),
    );
    await this.#receive(client, tokens);
  }

  /** Appends a receipt and fsyncs it; only then is the report acknowledged. */
  #receive(source: string, tokens: string[]): Promise<void> {
    const task = this.#files.then(async () => {
      const receipt: Receipt = {
        seq: this.#lastSeq + 1,
        time: new Date().toISOString(),
        source: source.slice(0, 64),
        tokens,
      };
      const handle = await open(this.#journalPath(), 'a', 0o600);
      try {
        await handle.write(`${JSON.stringify(receipt)}\n`);
        await handle.sync();
      } finally {
        await handle.close();
      }
      this.#lastSeq = receipt.seq;
      this.#pending.push(receipt);
    });
    this.#files = task.catch(() => undefined);
    return task.then(() => this.#kick());
  }

  /** Resolves once every receipt so far is done (tests, shutdown). */
  idle(): Promise<void> {
    if (this.#pending.length === 0 && !this.#processing) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#retry);
  }

  #kick(): void {
    if (this.#processing || this.#stopped) return;
    this.#processing = true;
    void this.#process()
      .catch((error) =>
        // The state file not written: the receipt is replayed at the next start (idempotent).
        this.#options.log.error({ err: String(error) }, 'leak-report state not written'),
      )
      .finally(() => {
        this.#processing = false;
        if (this.#pending.length === 0) for (const resolve of this.#idle.splice(0)) resolve();
      });
  }

  /** Revokes the tokens of each receipt in order; a transient failure retries later, in order. */
  async #process(): Promise<void> {
    while (!this.#stopped) {
      const receipt = this.#pending[0];
      if (receipt === undefined) return;
      try {
        while (receipt.tokens.length > 0) {
          await this.#revoke(receipt.source, receipt.tokens[0] as string);
          receipt.tokens.shift();
        }
      } catch (error) {
        const delay = Math.min(MAX_RETRY_MS, FIRST_RETRY_MS * 2 ** Math.min(this.#failures, 16));
        this.#failures++;
        this.#options.log.warn(
          { err: String(error), seq: receipt.seq, retryInMs: delay },
          'leaked-secret revocation failed: retrying',
        );
        this.#retry = setTimeout(() => this.#kick(), delay);
        this.#retry.unref();
        return;
      }
      this.#failures = 0;
      this.#pending.shift();
      await this.#done(receipt.seq);
    }
  }

  /** One token through the operation table: audited and announced like any other change. */
  async #revoke(source: string, tokenid: string): Promise<void> {
    const { stores, trail, log } = this.#options;
    const [userid, tokenName] = splitTokenid(tokenid);
    const config = await stores.readConfig();
    // Revoked meanwhile (another report, a delete, a replay after a restart): nothing to do.
    if (config.users.get(userid)?.tokens.has(tokenName) !== true) return;
    const audit = {
      trail,
      source,
      onAuditFailure: (error: unknown) =>
        log.error({ err: String(error) }, 'audit record not written'),
    };
    try {
      await runAudited(audit, revokeLeakedToken, stores, LEAK_REPORTER, { userid, tokenName });
    } catch (error) {
      // Gone between the look and the change: done as well. Anything else is retried.
      if (httpFailureOf(error).status === 404) return;
      throw error;
    }
    this.#options.onRevoked?.(tokenid);
    log.info({ op: revokeLeakedToken.name, target: tokenid, source }, 'leaked secret: revoked');
  }

  /** Marks receipts up to `seq` done; empties the journal once nothing in it is pending. */
  #done(seq: number): Promise<void> {
    const task = this.#files.then(async () => {
      this.#state.done = seq;
      await writeFileAtomic(this.#statePath(), `${JSON.stringify(this.#state)}\n`, {
        mode: 0o600,
      });
      if (this.#pending.length === 0 && this.#lastSeq === seq) {
        await writeFileAtomic(this.#journalPath(), '', { mode: 0o600 });
      }
    });
    this.#files = task.catch(() => undefined);
    return task;
  }
}
