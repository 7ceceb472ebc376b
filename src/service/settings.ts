/**
 * Where a deployment keeps its files and how it listens, resolved once from
 * options (command line) with defaults, so every process of one deployment
 * agrees on every path.
 */
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { ConfigError } from '../errors.js';
import { pagePathIn } from '../generations/paths.js';
import { type PageRecord, pageRecordPathIn, readPageRecord } from '../generations/record.js';
import {
  DEFAULT_PENALTY_BUDGET,
  DEFAULT_PENALTY_DECAY_PER_SECOND,
  DEFAULT_PENALTY_HOLD_MS,
  DEFAULT_PENALTY_IPV4_PREFIX,
  DEFAULT_PENALTY_IPV6_PREFIX,
} from '../http/penalty-defaults.js';
import type { SecretFormat } from '../secret-format.js';
import { lastUsedPathFor } from '../usage/file.js';
import { DEFAULT_REPORT_INTERVAL_MS } from '../usage/reporter.js';
import { formatDuration } from './duration-format.js';

export interface Settings {
  configDir: string;
  userCfgPath: string;
  shadowPath: string;
  /**
   * The token database (src/store). When it exists, every process keeps and
   * reads tokens there instead of user.cfg's token lines and token.shadow
   * (`tokenctl tokens migrate` creates it).
   */
  tokenDatabasePath: string;
  runtimeDir: string;
  /**
   * The page this process maps: the one the configuration directory records
   * (src/generations/record.ts) when there is a record, else `givenPagePath`.
   */
  pagePath: string;
  /** The page these options name by the one rule (the runtime directory's, or `pagePath` given). */
  givenPagePath: string;
  /** Where the configuration directory records its page. */
  pageRecordPath: string;
  /** The record as read when these settings were resolved. */
  pageRecord: PageRecord;
  socketPath: string;
  certPath: string;
  keyPath: string;
  host: string;
  port: number;
  /** Plain HTTP instead of HTTPS: only on loopback, for benchmarks. */
  plainHttp: boolean;
  workers: number;
  metricsHost: string;
  /** 0 turns the metrics endpoint off. */
  metricsPort: number;
  /** Group sharing user.cfg, token.shadow, the page and the socket with the API daemon. */
  gid: number | undefined;
  ttlMs: number;
  hashThreads: number;
  hashQueue: number;
  /**
   * Nice value the API workers give their threads but the main one (libuv's pool, where argon2
   * runs, and the hashing pool's): hashing then gets only the CPU serving leaves. 0: unchanged.
   */
  hashNice: number;
  /** How long an API worker waits for the manager's answer before a 503. */
  rpcDeadlineMs: number;
  /** Generation page caching; off means every verify hashes (for comparison). */
  caching: boolean;
  /** The manager's record of last uses, next to token.shadow. */
  lastUsedPath: string;
  /** The form of new secrets: scannable (`tsk_...`, the default) or Proxmox's UUID. */
  secretFormat: SecretFormat;
  /** The audit trail of every change (src/audit/trail.ts), root's alone. */
  auditDir: string;
  /** Webhook endpoints and their secrets (src/events/settings.ts), root's alone. */
  webhooksPath: string;
  /** The manager's event log and delivery state. */
  eventsDir: string;
  /** How often workers hand their usage notes to the manager, and the manager writes them. */
  lastUsedIntervalMs: number;
  /** Tokens and users expiring within this many seconds are logged daily and counted. */
  expiryWindowSeconds: number;
  /** Per-source authentication failure budgets of the API workers (see src/http/source-penalties.ts). */
  penalties: PenaltySettings;
}

export interface PenaltySettings {
  /** Failures a source may have before it is penalised; 0 turns penalties off. */
  budget: number;
  /** Failures forgiven per second. */
  decayPerSecond: number;
  /** How long a penalised peer's connection is held unread before it is closed, ms. */
  holdMs: number;
  /** Proxies (addresses or CIDR blocks) whose X-Forwarded-For names the source. */
  trustedProxies: string[];
  /** Prefix lengths by which addresses are grouped into one source (IPv4 /32, IPv6 /64). */
  ipv4Prefix: number;
  ipv6Prefix: number;
}

export interface SettingsInput {
  /** The form of new secrets (default scannable). */
  secretFormat?: SecretFormat;
  configDir?: string;
  runtimeDir?: string;
  pagePath?: string;
  socketPath?: string;
  certPath?: string;
  keyPath?: string;
  host?: string;
  port?: number;
  plainHttp?: boolean;
  workers?: number;
  metricsHost?: string;
  metricsPort?: number;
  gid?: number;
  ttlMs?: number;
  hashThreads?: number;
  hashQueue?: number;
  hashNice?: number;
  rpcDeadlineMs?: number;
  caching?: boolean;
  penalties?: Partial<PenaltySettings>;
  lastUsedIntervalMs?: number;
  expiryWindowSeconds?: number;
}

/** See Settings.hashNice; measured in bench/RESULTS.md (valid client p99 under a hashing flood). */
export const DEFAULT_HASH_NICE = 10;
export const DEFAULT_CONFIG_DIR = '/etc/token-shadow';
export const DEFAULT_RUNTIME_DIR = '/run/token-shadow';
export const DEFAULT_PORT = 8006;
export const DEFAULT_EXPIRY_WINDOW_SECONDS = 14 * 86_400;

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

export function isLoopback(host: string): boolean {
  return LOOPBACK.has(host) || host.startsWith('127.');
}

export function resolveSettings(input: SettingsInput = {}): Settings {
  const configDir = path.resolve(input.configDir ?? DEFAULT_CONFIG_DIR);
  const runtimeDir = path.resolve(
    input.runtimeDir ?? process.env.RUNTIME_DIRECTORY?.split(':')[0] ?? DEFAULT_RUNTIME_DIR,
  );
  const workers = input.workers ?? availableParallelism();
  const host = input.host ?? '0.0.0.0';
  const plainHttp = input.plainHttp ?? false;
  const shadowPath = path.join(configDir, 'token.shadow');
  if (plainHttp && !isLoopback(host)) {
    throw new Error(`plain HTTP is only allowed on loopback, not on ${host}`);
  }
  const givenPagePath = input.pagePath ?? pagePathIn(runtimeDir);
  const pageRecordPath = pageRecordPathIn(configDir);
  const pageRecord = readPageRecord(pageRecordPath);
  const settings: Settings = {
    configDir,
    userCfgPath: path.join(configDir, 'user.cfg'),
    shadowPath,
    tokenDatabasePath: path.join(configDir, 'access.db'),
    runtimeDir,
    pagePath: pageRecord.kind === 'recorded' ? pageRecord.pagePath : givenPagePath,
    givenPagePath,
    pageRecordPath,
    pageRecord,
    socketPath: input.socketPath ?? path.join(runtimeDir, 'manager.sock'),
    certPath: input.certPath ?? path.join(configDir, 'api-ssl.pem'),
    keyPath: input.keyPath ?? path.join(configDir, 'api-ssl.key'),
    host,
    port: input.port ?? DEFAULT_PORT,
    plainHttp,
    workers,
    metricsHost: input.metricsHost ?? '127.0.0.1',
    metricsPort: input.metricsPort ?? 9106,
    gid: input.gid,
    ttlMs: input.ttlMs ?? 60_000,
    hashThreads: input.hashThreads ?? Math.max(1, Math.floor(availableParallelism() / workers)),
    hashQueue: input.hashQueue ?? 16,
    hashNice: input.hashNice ?? DEFAULT_HASH_NICE,
    rpcDeadlineMs: input.rpcDeadlineMs ?? 15_000,
    caching: input.caching ?? true,
    penalties: {
      budget: input.penalties?.budget ?? DEFAULT_PENALTY_BUDGET,
      decayPerSecond: input.penalties?.decayPerSecond ?? DEFAULT_PENALTY_DECAY_PER_SECOND,
      holdMs: input.penalties?.holdMs ?? DEFAULT_PENALTY_HOLD_MS,
      trustedProxies: [...(input.penalties?.trustedProxies ?? [])],
      ipv4Prefix: input.penalties?.ipv4Prefix ?? DEFAULT_PENALTY_IPV4_PREFIX,
      ipv6Prefix: input.penalties?.ipv6Prefix ?? DEFAULT_PENALTY_IPV6_PREFIX,
    },
    lastUsedPath: lastUsedPathFor(shadowPath),
    secretFormat: input.secretFormat ?? 'scannable',
    auditDir: path.join(configDir, 'audit'),
    webhooksPath: path.join(configDir, 'webhooks.json'),
    eventsDir: path.join(configDir, 'events'),
    lastUsedIntervalMs: input.lastUsedIntervalMs ?? DEFAULT_REPORT_INTERVAL_MS,
    expiryWindowSeconds: input.expiryWindowSeconds ?? DEFAULT_EXPIRY_WINDOW_SECONDS,
  };
  checkRanges(settings);
  return settings;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

interface Range {
  /** How people set it: the settings file's key and the option. */
  name: string;
  value: (settings: Settings) => number | undefined;
  min: number;
  max: number;
  /** Milliseconds or seconds, shown as durations (`10s`, `14d`); otherwise a count. */
  unit?: 'ms' | 's';
  /** Whole numbers only (every count, and durations in ms, which timers take whole). */
  integer?: boolean;
}

/**
 * The sane range of every number a daemon runs with. Durations end in
 * timers, and Node's timers take at most 2^31-1 ms (24.8 days): a longer one
 * fires after 1 ms, so a daemon with `lastUsedInterval` 1000d looped ~900
 * times a second. Every bound here is far inside that, and far from a value
 * that would make a daemon spin or a client wait for ever.
 */
const RANGES: readonly Range[] = [
  { name: 'ttlMs (--ttl)', value: (s) => s.ttlMs, min: 0, max: HOUR, unit: 'ms', integer: true },
  {
    name: 'lastUsedInterval (--last-used-interval)',
    value: (s) => s.lastUsedIntervalMs,
    min: SECOND,
    max: DAY,
    unit: 'ms',
    integer: true,
  },
  {
    name: 'expiryWindow (--expiry-window)',
    value: (s) => s.expiryWindowSeconds,
    min: 1,
    max: 3650 * 86_400,
    unit: 's',
    integer: true,
  },
  {
    name: '--rpc-deadline',
    value: (s) => s.rpcDeadlineMs,
    min: 100,
    max: 10 * MINUTE,
    unit: 'ms',
    integer: true,
  },
  {
    name: '--penalty-hold',
    value: (s) => s.penalties.holdMs,
    min: 0,
    max: 10 * MINUTE,
    unit: 'ms',
    integer: true,
  },
  { name: 'workers (--workers)', value: (s) => s.workers, min: 1, max: 256, integer: true },
  {
    name: 'hashThreads (--hash-threads)',
    value: (s) => s.hashThreads,
    min: 1,
    max: 256,
    integer: true,
  },
  {
    name: 'hashQueue (--hash-queue)',
    value: (s) => s.hashQueue,
    min: 0,
    max: 1_000_000,
    integer: true,
  },
  { name: '--hash-nice', value: (s) => s.hashNice, min: 0, max: 19, integer: true },
  { name: '--port', value: (s) => s.port, min: 0, max: 65_535, integer: true },
  { name: '--metrics-port', value: (s) => s.metricsPort, min: 0, max: 65_535, integer: true },
  { name: '--group', value: (s) => s.gid, min: 0, max: 2 ** 32 - 2, integer: true },
  {
    name: '--penalty-budget',
    value: (s) => s.penalties.budget,
    min: 0,
    max: 1_000_000,
    integer: true,
  },
  { name: '--penalty-decay', value: (s) => s.penalties.decayPerSecond, min: 0, max: 1_000_000 },
];

function show(range: Range, value: number): string {
  if (!Number.isFinite(value)) return String(value);
  if (range.unit === 'ms') return formatDuration(value);
  if (range.unit === 's') return formatDuration(value * 1000);
  return String(value);
}

/** Throws ConfigError naming the first setting outside its range (the settings are not used). */
function checkRanges(settings: Settings): void {
  for (const range of RANGES) {
    const value = range.value(settings);
    if (value === undefined) continue;
    const whole = !range.integer || Number.isInteger(value);
    if (typeof value !== 'number' || !whole || !(value >= range.min && value <= range.max)) {
      const kind = range.integer && range.unit === undefined ? 'an integer' : 'a value';
      throw new ConfigError(
        'invalid',
        `${range.name} must be ${kind} from ${show(range, range.min)} to ${show(range, range.max)}, not ${show(range, Number(value))}`,
      );
    }
  }
}
