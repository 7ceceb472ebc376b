/**
 * Events to the outside: webhooks for token changes (from the audit trail,
 * whoever made them: API or tokenctl) and for tokens about to expire or
 * unused for long. Run by the manager alone.
 *
 * Durable and at least once: the manager appends every event to its own log
 * (`<config-dir>/events/events.jsonl`, each with a sequence number) before
 * anything is sent, and keeps per endpoint the last sequence it delivered
 * (`cursors.json`, written after the endpoint answered 2xx). A restart picks
 * up where delivery stopped; a failed delivery is retried, in order, with
 * exponential backoff. An endpoint may see an event twice (a crash after
 * its 2xx, before the cursor was written): `id` is the same both times.
 *
 * Signed: `X-Token-Shadow-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256
 * of "<t>.<body>" with the endpoint's secret>`, so a receiver refuses a
 * forgery, and a replay by the age of `t`. No event carries a secret or a hash.
 */
import { createHmac } from 'node:crypto';
import { mkdir, open, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { AuditRecord } from '../audit/trail.js';
import { writeFileAtomic } from '../files/atomic.js';
import type { WebhookEndpoint, WebhookSettings } from './settings.js';

export const EVENT_TYPES = [
  'token.created',
  'token.rotated',
  'token.revoked',
  'token.expiring',
  'token.unused',
  /** A rotation's previous secret used while its grace lasts: a client has not moved yet. */
  'token.previous-secret-used',
  /** The right secret from an address outside the token's allowed-ips: a leak, or a moved client. */
  'token.source-refused',
  /** A secret reported leaked revoked its token (POST /access/leaked-secrets, tokenctl). */
  'token.leaked',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface TokenEvent {
  seq: number;
  /** Stable across redeliveries: what a receiver deduplicates on. */
  id: string;
  type: EventType;
  /** ISO 8601, UTC. */
  time: string;
  host: string;
  data: Record<string, unknown>;
}

/** The events an audit record stands for (none for a refusal or an unrelated change). */
export function eventsOfRecord(record: AuditRecord): Omit<TokenEvent, 'seq' | 'id' | 'host'>[] {
  if (record.outcome !== 'ok') return [];
  const by = { actor: record.actor, source: record.source, 'audit-seq': record.seq };
  const changes = record.changes as {
    fields?: { enable?: boolean };
    changes?: { enable?: boolean };
    regenerate?: boolean;
  };
  const about = (type: EventType, data: Record<string, unknown>) => [
    { type, time: record.time, data: { ...data, ...by } },
  ];
  switch (record.op) {
    case 'token.create':
      return about('token.created', { tokenid: record.target });
    case 'token.rotate':
      return about('token.rotated', { tokenid: record.target });
    case 'token.delete':
      return about('token.revoked', { tokenid: record.target, how: 'deleted' });
    case 'token.update':
      if (changes.regenerate) return about('token.rotated', { tokenid: record.target });
      if (changes.changes?.enable === false) {
        return about('token.revoked', { tokenid: record.target, how: 'disabled' });
      }
      return [];
    // A secret reported leaked (POST /access/leaked-secrets, tokenctl token revoke-leaked):
    // the report, and the revocation it made, for receivers that follow only revocations.
    case 'token.revoke-leaked':
      return [
        ...about('token.leaked', { tokenid: record.target }),
        ...about('token.revoked', { tokenid: record.target, how: 'leaked' }),
      ];
    case 'user.delete':
      return about('token.revoked', { userid: record.target, how: 'user deleted' });
    default:
      return [];
  }
}

/** The signature header of `body` sent at `t` (seconds) to an endpoint with `secret`. */
export function signature(secret: string, t: number, body: string): string {
  return `t=${t},v1=${createHmac('sha256', secret).update(`${t}.${body}`).digest('hex')}`;
}

interface State {
  /** The last audit record turned into events. */
  auditSeq: number;
  /** The last event delivered, per endpoint URL. */
  delivered: Record<string, number>;
  /** Notices already sent: `token.expiring` per id, expiry and lead; `token.unused` per id and last use. */
  notices: string[];
}

export interface WebhookSourceOptions {
  dir: string;
  host: string;
  /** Every audit record after `seq`, oldest first. */
  auditAfter(seq: number): AsyncIterable<AuditRecord>;
  /** The last audit record's seq: where a first start begins (no flood of old changes). */
  auditHead(): Promise<number>;
  /** What can be said of each token now: for expiry and unused notices. */
  tokens(): Promise<{ id: string; expire: number; lastUsed: number | undefined }[]>;
  log: { warn(fields: object, message: string): void; info(fields: object, message: string): void };
  /** For tests: the clock in ms. */
  now?: () => number;
}

const FIRST_RETRY_MS = 1000;

/** The manager's webhook dispatcher: the event log, the cursors, and one sender per endpoint. */
export class Webhooks {
  readonly #options: WebhookSourceOptions;
  #settings: WebhookSettings;
  #state: State = { auditSeq: 0, delivered: {}, notices: [] };
  #events: TokenEvent[] = [];
  readonly #senders = new Map<
    string,
    { busy: boolean; timer?: NodeJS.Timeout; failures: number }
  >();
  #collecting: Promise<void> = Promise.resolve();
  /** Set once opened (on the first endpoint): until then nothing is collected or written. */
  #opening: Promise<void> | null = null;
  #stopped = false;
  readonly #now: () => number;

  constructor(settings: WebhookSettings, options: WebhookSourceOptions) {
    this.#settings = settings;
    this.#options = options;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Loads the log and the state; delivery starts at the next wake(). Without
   * an endpoint nothing is opened, kept or written: the first reload that
   * adds one opens it (and the events start from then on).
   */
  open(): Promise<void> {
    if (this.#settings.endpoints.length === 0) return Promise.resolve();
    this.#opening ??= this.#open();
    return this.#opening;
  }

  async #open(): Promise<void> {
    await mkdir(this.#options.dir, { recursive: true, mode: 0o700 });
    try {
      this.#state = JSON.parse(await readFile(this.#statePath(), 'utf8')) as State;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
      this.#state.auditSeq = await this.#options.auditHead();
    }
    try {
      const text = await readFile(this.#logPath(), 'utf8');
      this.#events = text
        .split('\n')
        .filter((line) => line !== '')
        .map((line) => JSON.parse(line) as TokenEvent);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    this.#startNewEndpoints();
    await this.#saveState();
  }

  /** New endpoints or lead times (a reload): a new endpoint gets the events from now on. */
  reconfigure(settings: WebhookSettings): void {
    this.#settings = settings;
    if (this.#opening === null) {
      void this.open().then(() => this.wake());
      return;
    }
    this.#startNewEndpoints();
    void this.wake();
  }

  #startNewEndpoints(): void {
    const last = this.#events.at(-1)?.seq ?? 0;
    for (const endpoint of this.#settings.endpoints) this.#state.delivered[endpoint.url] ??= last;
  }

  /** Turns new audit records (and due notices) into events, then delivers what is pending. */
  wake(): Promise<void> {
    const opening = this.#opening;
    if (opening === null) return Promise.resolve();
    this.#collecting = this.#collecting
      .then(() => opening)
      .then(() => this.#collect())
      .catch((error) => {
        this.#options.log.warn({ err: String(error) }, 'webhook events not collected');
      });
    return this.#collecting.then(() => this.#deliverAll());
  }

  /**
   * An event seen on requests rather than in the trail (a worker's policy
   * event): appended to the log, then delivered like any other. Nothing
   * without an endpoint.
   */
  report(type: EventType, data: Record<string, unknown>): Promise<void> {
    const opening = this.#opening;
    if (opening === null) return Promise.resolve();
    const time = new Date(this.#now()).toISOString();
    this.#collecting = this.#collecting
      .then(() => opening)
      .then(() => this.#append([{ type, time, data }]))
      .catch((error) => {
        this.#options.log.warn({ err: String(error) }, 'webhook event not kept');
      });
    return this.#collecting.then(() => this.#deliverAll());
  }

  /** Adds the notices due now (expiring within a lead time, unused for too long). */
  async checkNotices(): Promise<void> {
    const opening = this.#opening;
    if (opening === null) return;
    this.#collecting = this.#collecting.then(() => opening).then(() => this.#notices());
    await this.#collecting;
    await this.#deliverAll();
  }

  stop(): void {
    this.#stopped = true;
    for (const sender of this.#senders.values()) clearTimeout(sender.timer);
  }

  /** Events in the log (for tests and `delivered`). */
  get events(): readonly TokenEvent[] {
    return this.#events;
  }

  delivered(url: string): number {
    return this.#state.delivered[url] ?? 0;
  }

  #statePath() {
    return path.join(this.#options.dir, 'state.json');
  }

  #logPath() {
    return path.join(this.#options.dir, 'events.jsonl');
  }

  async #saveState(): Promise<void> {
    await writeFileAtomic(this.#statePath(), `${JSON.stringify(this.#state)}\n`, { mode: 0o600 });
  }

  /** Appends events (durably) before anything may send them. */
  async #append(events: Omit<TokenEvent, 'seq' | 'id' | 'host'>[]): Promise<void> {
    if (events.length === 0) return;
    let seq = this.#events.at(-1)?.seq ?? 0;
    const full = events.map((e) => {
      seq++;
      return { seq, id: `${this.#options.host}-${seq}`, host: this.#options.host, ...e };
    });
    const handle = await open(this.#logPath(), 'a', 0o600);
    try {
      await handle.write(full.map((e) => `${JSON.stringify(e)}\n`).join(''));
      await handle.sync();
    } finally {
      await handle.close();
    }
    this.#events.push(...full);
  }

  async #collect(): Promise<void> {
    const found: Omit<TokenEvent, 'seq' | 'id' | 'host'>[] = [];
    let last = this.#state.auditSeq;
    for await (const record of this.#options.auditAfter(last)) {
      found.push(...eventsOfRecord(record));
      last = record.seq;
    }
    if (last === this.#state.auditSeq) return;
    await this.#append(found);
    this.#state.auditSeq = last;
    await this.#saveState();
  }

  async #notices(): Promise<void> {
    const now = Math.floor(this.#now() / 1000);
    const sent = new Set(this.#state.notices);
    const found: Omit<TokenEvent, 'seq' | 'id' | 'host'>[] = [];
    const time = new Date(this.#now()).toISOString();
    const unusedSeconds = this.#settings.unusedAfterSeconds;
    for (const token of await this.#options.tokens()) {
      for (const days of this.#settings.expiryLeadDays) {
        const key = `expiring|${token.id}|${token.expire}|${days}`;
        const due = token.expire !== 0 && token.expire > now && token.expire - now <= days * 86400;
        if (due && !sent.has(key)) {
          sent.add(key);
          found.push({
            type: 'token.expiring',
            time,
            data: { tokenid: token.id, expire: token.expire, 'lead-days': days },
          });
        }
      }
      if (unusedSeconds !== null && token.lastUsed !== undefined) {
        const key = `unused|${token.id}|${token.lastUsed}`;
        if (now - token.lastUsed >= unusedSeconds && !sent.has(key)) {
          sent.add(key);
          found.push({
            type: 'token.unused',
            time,
            data: {
              tokenid: token.id,
              'last-used': token.lastUsed,
              'unused-seconds': unusedSeconds,
            },
          });
        }
      }
    }
    if (found.length === 0) return;
    await this.#append(found);
    this.#state.notices = [...sent];
    await this.#saveState();
  }

  async #deliverAll(): Promise<void> {
    await Promise.all(this.#settings.endpoints.map((endpoint) => this.#deliver(endpoint)));
  }

  /** Sends the endpoint's pending events in order; on failure, retries later with backoff. */
  async #deliver(endpoint: WebhookEndpoint): Promise<void> {
    let sender = this.#senders.get(endpoint.url);
    if (sender === undefined) {
      sender = { busy: false, failures: 0 };
      this.#senders.set(endpoint.url, sender);
    }
    if (sender.busy || this.#stopped) return;
    sender.busy = true;
    clearTimeout(sender.timer);
    try {
      for (;;) {
        const cursor = this.#state.delivered[endpoint.url] ?? 0;
        const next = this.#events.find(
          (e) => e.seq > cursor && (endpoint.events === null || endpoint.events.includes(e.type)),
        );
        if (next === undefined) {
          const skipped = this.#events.at(-1)?.seq ?? cursor;
          if (skipped > cursor) {
            this.#state.delivered[endpoint.url] = skipped;
            await this.#saveState();
          }
          return;
        }
        if (!(await this.#post(endpoint, next))) {
          const cap = this.#settings.retryMaxMs;
          const delay = Math.min(cap, FIRST_RETRY_MS * 2 ** Math.min(sender.failures, 30));
          sender.failures++;
          sender.timer = setTimeout(() => this.#deliver(endpoint), delay * (0.5 + Math.random()));
          sender.timer.unref();
          return;
        }
        sender.failures = 0;
        this.#state.delivered[endpoint.url] = next.seq;
        await this.#saveState();
      }
    } finally {
      sender.busy = false;
    }
  }

  async #post(endpoint: WebhookEndpoint, event: TokenEvent): Promise<boolean> {
    const body = JSON.stringify(event);
    const t = Math.floor(this.#now() / 1000);
    try {
      const reply = await fetch(endpoint.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-token-shadow-event': event.type,
          'x-token-shadow-delivery': event.id,
          'x-token-shadow-signature': signature(endpoint.secret, t, body),
        },
        body,
        signal: AbortSignal.timeout(endpoint.timeoutMs),
      });
      await reply.arrayBuffer();
      if (reply.ok) return true;
      this.#options.log.warn(
        { url: endpoint.url, status: reply.status, event: event.id },
        'webhook refused',
      );
    } catch (error) {
      this.#options.log.warn(
        { url: endpoint.url, err: String(error), event: event.id },
        'webhook not delivered',
      );
    }
    return false;
  }
}
