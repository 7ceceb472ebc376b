/**
 * What one tokenctl command runs with: the settings from the global options,
 * the deployment (opened on first use, closed when the command ends, since the
 * hash pool keeps the process alive) and where output goes.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import type { Command } from 'commander';
import { type AuditRecord, AuditTrail } from '../audit/trail.js';
import type { UserConfig } from '../config/types.js';
import { GenerationPageError } from '../errors.js';
import { GenerationPage } from '../generations/page.js';
import { addonAvailable } from '../native.js';
import { SECRET_FORMATS, type SecretFormat } from '../secret-format.js';
import {
  type AuditContext,
  recordingStorage,
  recordOutcome,
  runAudited,
} from '../service/audited.js';
import { type Deployment, ensureDirectories, openDeployment } from '../service/deployment.js';
import { resolveGroupId } from '../service/group.js';
import {
  type ReadOperation,
  runRead,
  type Stores,
  type WriteOperation,
} from '../service/operations.js';
import { HOST_ROOT } from '../service/rules.js';
import { resolveSettings, type Settings } from '../service/settings.js';
import type { RecordingStorage } from '../service/storage.js';
import { openStorageMode, type StorageMode } from '../service/storage-mode.js';
import { readShadow } from '../shadow/file.js';
import { readLastUsed } from '../usage/file.js';
import { ExitCode } from './exit.js';
import {
  type Column,
  type OutputFormat,
  outputFormatOf,
  renderData,
  renderRecord,
  renderTable,
  type TextStyle,
  utf8Locale,
} from './output.js';

/**
 * tokenctl acts for the administrator on the host: host root, whom every rule
 * lets through whatever the files say, so it can always repair them.
 */
export const CLI_CALLER = HOST_ROOT;

/** A record to syslog through logger(1), when the host has a syslog socket; never waited for. */
function toSyslog(record: AuditRecord): void {
  if (!existsSync('/dev/log')) return;
  const child = spawn('logger', ['-t', 'tokenctl', '-p', 'auth.notice', JSON.stringify(record)], {
    stdio: 'ignore',
  });
  child.on('error', () => undefined);
  child.unref();
}

export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
}

export const PROCESS_IO: CliIo = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

export interface GlobalOptions {
  configDir: string;
  runtimeDir: string;
  group?: string;
  output: string;
  /** pveum's name of --output; wins when given. */
  outputFormat?: string;
  noborder?: boolean;
  noheader?: boolean;
}

/**
 * The group shared with the API daemon: --group, else the group of the config
 * directory when it is not root's (the manager gives it the deployment's group).
 * Without it, a file tokenctl rewrites would lose the group the API reads it by.
 */
export function deploymentGid(configDir: string, group: string | undefined): number | undefined {
  if (group !== undefined) return resolveGroupId(group);
  try {
    const gid = statSync(configDir).gid;
    return gid === 0 ? undefined : gid;
  } catch {
    return undefined;
  }
}

/**
 * The daemons' `secretFormat` (api.json in the config directory), so that
 * tokenctl makes secrets of the form the manager makes; scannable without it.
 */
function secretFormatOf(configDir: string): SecretFormat | undefined {
  try {
    const raw = JSON.parse(readFileSync(path.join(configDir, 'api.json'), 'utf8')) as {
      secretFormat?: unknown;
    };
    return (SECRET_FORMATS as readonly unknown[]).includes(raw.secretFormat)
      ? (raw.secretFormat as SecretFormat)
      : undefined;
  } catch {
    return undefined;
  }
}

export function settingsFromOptions(options: GlobalOptions): Settings {
  const gid = deploymentGid(options.configDir, options.group);
  const secretFormat = secretFormatOf(options.configDir);
  return resolveSettings({
    ...(secretFormat === undefined ? {} : { secretFormat }),
    configDir: options.configDir,
    runtimeDir: options.runtimeDir,
    workers: 1,
    hashThreads: 1,
    ...(gid === undefined ? {} : { gid }),
  });
}

/** Why a page that openDeployment could not open is unusable, as a GenerationPageError. */
function pageFailure(path: string, warning: string | undefined): GenerationPageError {
  const refusal =
    'refusing to change anything: running daemons would not notice the change before their caches expire';
  try {
    GenerationPage.open(path, { create: false, readOnly: true }).close();
    return new GenerationPageError(
      path,
      'permission-denied',
      `readable but not writable; ${refusal}`,
    );
  } catch (error) {
    if (error instanceof GenerationPageError) {
      const detail = error.message.startsWith(`${path}: `)
        ? error.message.slice(path.length + 2)
        : error.message;
      return new GenerationPageError(path, error.problem, `${detail}; ${refusal}`);
    }
    return new GenerationPageError(path, 'io', `${warning ?? String(error)}; ${refusal}`);
  }
}

/**
 * Without the addon tokenctl cannot map the page, so it cannot announce a
 * change. That is safe only when no page exists: every process that caches
 * maps it, so without one nobody holds a cached secret to forget.
 */
function nothingCaches(settings: Settings): boolean {
  return !addonAvailable() && !existsSync(settings.pagePath);
}

/** What one command runs with; the run itself (output, exit code) is `cli`. */
export class CliContext {
  readonly cli: Cli;
  readonly format: OutputFormat;
  readonly style: TextStyle;
  readonly settings: Settings;
  readonly command: Command;
  #deployment: Deployment | null = null;
  #mode: StorageMode | null = null;
  #pageWarning: string | undefined;
  #trail: AuditTrail | null = null;
  #recording: RecordingStorage | null = null;

  constructor(cli: Cli, command: Command) {
    const options = command.optsWithGlobals<GlobalOptions>();
    this.cli = cli;
    this.command = command;
    this.format = outputFormatOf(options.outputFormat ?? options.output);
    this.style = {
      border: options.noborder !== true,
      header: options.noheader !== true,
      unicode: utf8Locale(),
    };
    this.settings = settingsFromOptions(options);
  }

  warn(message: string): void {
    this.cli.io.stderr(`tokenctl: warning: ${message}\n`);
  }

  /** The deployment for reading. */
  reader(): Deployment {
    this.#deployment ??= openDeployment(this.settings, 'cli', {
      warn: (message) => {
        if (message.startsWith('generation page')) this.#pageWarning = message;
        this.warn(message);
      },
    });
    return this.#deployment;
  }

  /** Whether a token has a secret stored (token.shadow, or the token database's row). */
  async hasSecret(): Promise<(tokenid: string) => boolean> {
    const store = this.reader().tokenStore;
    if (store !== null) return (tokenid) => (store.get(tokenid)?.hash ?? '') !== '';
    const secrets = (await readShadow(this.settings.shadowPath)).entries;
    return (tokenid) => secrets.has(tokenid);
  }

  /**
   * The stores for writing. Call it before reading anything: it
   * creates missing directories first (as the manager would) and refuses to
   * work without the generation page, because a change nobody announces would
   * leave removed or rotated tokens working in the daemons' caches.
   */
  async writer(): Promise<Stores> {
    if (this.#deployment === null) await ensureDirectories(this.settings);
    const deployment = this.reader();
    this.#mode ??= await openStorageMode(deployment, 'cli');
    // Multi-host mode writes to etcd and waits for every host's sync agent.
    if (
      this.#mode.cluster === null &&
      this.settings.caching &&
      deployment.page === null &&
      !nothingCaches(this.settings)
    ) {
      throw pageFailure(this.settings.pagePath, this.#pageWarning);
    }
    return this.#mode.storage;
  }

  /** Runs a write operation of the service as root@pam, writing the files from this process. */
  async write<P, R>(operation: WriteOperation<P, R>, params: P): Promise<R> {
    const { lastUsedPath, lastUsedIntervalMs } = this.settings;
    // The ledger's file: what the manager last wrote (tokenctl sees no worker's newer notes).
    const lastUses = {
      intervalMs: lastUsedIntervalMs,
      async lookup() {
        const { tokens } = await readLastUsed(lastUsedPath);
        return (tokenid: string) => tokens.get(tokenid)?.seconds;
      },
    };
    return runAudited(this.audit(), operation, await this.writer(), CLI_CALLER, params, {
      lastUses,
    });
  }

  /**
   * Where tokenctl's changes are accounted for: the deployment's audit trail
   * (as the manager's), each record also sent to syslog (the journal) when
   * the host has one.
   */
  audit(): AuditContext {
    this.#trail ??= new AuditTrail({
      dir: this.settings.auditDir,
      host: hostname(),
      onRecord: toSyslog,
    });
    return {
      trail: this.#trail,
      source: `tokenctl uid=${process.getuid?.() ?? -1} pid=${process.pid}`,
      onAuditFailure: (error) => this.warn(`the audit record was not written: ${error}`),
    };
  }

  /**
   * The stores for a change made outside the operation table (import): in
   * multi-host mode each of its transactions carries its record into the
   * cluster's trail; `recordChange` then names the last revision.
   */
  async recordingWriter(op: string, params: Record<string, unknown>): Promise<Stores> {
    const stores = await this.writer();
    this.#recording = recordingStorage(this.audit(), stores, op, CLI_CALLER, params);
    return this.#recording ?? stores;
  }

  /** Accounts for a change tokenctl made outside the operation table (import, doctor --fix). */
  async recordChange(op: string, params: Record<string, unknown>, error?: unknown): Promise<void> {
    const revision = this.#recording?.recorded.at(-1);
    await recordOutcome(this.audit(), op, CLI_CALLER, params, error, revision);
  }

  /** Runs a read operation of the service as root@pam on the current config. */
  async read<P, R>(operation: ReadOperation<P, R>, params: P): Promise<R> {
    return runRead(operation, await this.config(), CLI_CALLER, params);
  }

  async config(): Promise<UserConfig> {
    return this.reader().users.get();
  }

  /** A list: a table for people, `data` (by default the rows themselves) for scripts. */
  printList<T>(rows: readonly T[], columns: readonly Column<T>[], data: unknown = rows): void {
    this.cli.io.stdout(
      this.format === 'text'
        ? renderTable(rows, columns, this.style)
        : renderData(data, this.format),
    );
  }

  /** One object: a key/value table for people, the object itself for scripts. */
  printRecord(data: unknown, fields: ReadonlyArray<readonly [string, string]>): void {
    this.cli.io.stdout(
      this.format === 'text' ? renderRecord(fields, this.style) : renderData(data, this.format),
    );
  }

  /** The API's answer (often null) for scripts, a sentence for people. */
  printDone(data: unknown, sentence: string): void {
    this.cli.io.stdout(this.format === 'text' ? `${sentence}\n` : renderData(data, this.format));
  }

  /** A usage error (exit 2) found after parsing, e.g. nothing to change. */
  usageError(message: string): never {
    this.command.error(`error: ${message}`, {
      exitCode: ExitCode.USAGE,
      code: 'tokenctl.usage',
    });
    throw new Error('unreachable: commander.error returned');
  }

  async close(): Promise<void> {
    const deployment = this.#deployment;
    const mode = this.#mode;
    this.#deployment = null;
    this.#mode = null;
    await mode?.close();
    await deployment?.close();
  }
}

/** One tokenctl run: where output goes and the exit code (a command may set it). */
export class Cli {
  readonly io: CliIo;
  exitCode: number = ExitCode.OK;

  constructor(io: CliIo) {
    this.io = io;
  }

  /**
   * A commander action running `fn` with a context for the invoked command,
   * always closing the deployment afterwards.
   */
  action<A extends unknown[]>(
    fn: (ctx: CliContext, ...args: A) => Promise<void>,
  ): (...args: unknown[]) => Promise<void> {
    return async (...args) => {
      const command = args[args.length - 1] as Command;
      const ctx = new CliContext(this, command);
      try {
        await fn(ctx, ...(args.slice(0, -1) as A));
      } finally {
        await ctx.close();
      }
    };
  }
}
