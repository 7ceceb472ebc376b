/**
 * Every error this library throws on purpose, in one place, so that callers can
 * branch on `instanceof` or `code` instead of parsing messages. Messages never
 * contain a secret or a hash: values from outside are quoted with `quote()`.
 */

/** Escapes control and non-ASCII characters and truncates, for quoting untrusted input. */
export function quote(value: string, max = 64): string {
  const cut = value.length > max ? `${value.slice(0, max)}...` : value;
  return JSON.stringify(cut).replace(/[\u007f-\uffff]/g, (c) => {
    return `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;
  });
}

/** Base class: `code` is stable and meant for programs, `message` for people. */
export class TokenShadowError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * What is wrong with the generation page. `retired`: a writer retired it (it is
 * no longer the page at its path), so it is never trusted again; `unpinned`:
 * this process could not pin its mapping where writers look for it
 * (src/generations/stale.ts), so it must not cache through it.
 */
export type GenerationPageProblem =
  | 'not-found'
  | 'permission-denied'
  | 'not-regular-file'
  | 'wrong-size'
  | 'wrong-magic'
  | 'read-only'
  | 'closed'
  | 'addon-unavailable'
  | 'insecure'
  | 'unreachable'
  | 'retired'
  | 'unpinned'
  | 'io';

/** The shared generation page could not be opened or used. */
export class GenerationPageError extends TokenShadowError {
  readonly path: string;
  readonly problem: GenerationPageProblem;
  constructor(path: string, problem: GenerationPageProblem, detail: string) {
    super(`ERR_GENERATION_PAGE_${problem.toUpperCase().replace(/-/g, '_')}`, `${path}: ${detail}`);
    this.path = path;
    this.problem = problem;
  }
}

/**
 * The native addon (token_shadow.node) could not be loaded and `purpose` needs
 * it: the generation page (caching) and legacy crypt(3) hashes ($5$, $6$, $y$).
 * Everything else works without it.
 */
export class AddonUnavailableError extends TokenShadowError {
  readonly purpose: string;
  constructor(purpose: string, cause: Error) {
    const detail = cause.message.split('\n')[0];
    super(
      'ERR_ADDON_UNAVAILABLE',
      `${purpose} needs the native addon token_shadow.node, which could not be loaded ` +
        `(${detail}); reinstall token-shadow on this platform or build it with npm run build:native`,
      { cause },
    );
    this.purpose = purpose;
  }
}

/** A user id, token id or token name that does not follow the id grammar. */
export class InvalidIdError extends TokenShadowError {
  constructor(kind: string, value: string, reason: string) {
    super('ERR_INVALID_ID', `invalid ${kind} ${quote(value)}: ${reason}`);
  }
}

/** The hashing queue is full: fail fast (HTTP 503) rather than pile up work. */
export class BusyError extends TokenShadowError {
  constructor(message = 'hashing queue is full, try again later') {
    super('ERR_BUSY', message);
  }
}

/**
 * This host may no longer trust its copy of the shared store (multi-host mode:
 * the sync agent stopped confirming its lease). Every token is refused with
 * 503 until the agent has resynchronised: never a stale accept.
 */
export class FencedError extends BusyError {
  constructor() {
    super('this host is fenced from the cluster store, try again later');
    Object.defineProperty(this, 'code', { value: 'ERR_FENCED' });
  }
}

export type ClusterProblem = 'unavailable' | 'conflict' | 'not-configured' | 'refused';

/**
 * Multi-host mode could not do what was asked: etcd unreachable or without
 * quorum (`unavailable`), a change kept losing its compare (`conflict`),
 * etcd refused this host's credentials: a wrong password, a user without a
 * role on the cluster's keys, a TLS handshake it or we rejected (`refused`:
 * a setting to fix, not worth retrying). A committed change is never refused
 * for hosts that did not confirm it: it waits at most one lease for them,
 * after which every host that did not apply it is fenced.
 */
export class ClusterError extends TokenShadowError {
  readonly problem: ClusterProblem;
  constructor(problem: ClusterProblem, message: string, options?: { cause?: unknown }) {
    super(`ERR_CLUSTER_${problem.toUpperCase().replace(/-/g, '_')}`, message, options);
    this.problem = problem;
  }
}

/** What is wrong with token.shadow. */
export type ShadowFileProblem = 'unreadable' | 'bad-json' | 'bad-shape' | 'insecure';

/**
 * token.shadow cannot be used. The message names the path and the problem,
 * never the content: the file holds hashes.
 */
export class ShadowFileError extends TokenShadowError {
  readonly path: string;
  readonly problem: ShadowFileProblem;
  constructor(path: string, problem: ShadowFileProblem, detail: string) {
    super('ERR_SHADOW_FILE', `${path}: ${detail}`);
    this.path = path;
    this.problem = problem;
  }
}

/** Why a lock failed. */
export type LockProblem = 'timeout' | 'compromised' | 'io';

/** A file lock could not be taken, or was lost while held (the change was not made). */
export class LockError extends TokenShadowError {
  readonly path: string;
  readonly problem: LockProblem;
  constructor(path: string, problem: LockProblem, detail: string, options?: { cause?: unknown }) {
    super('ERR_LOCK', `${path}: ${detail}`, options);
    this.path = path;
    this.problem = problem;
  }
}

/** What kind of ConfigError it is. */
export type ConfigProblem = 'exists' | 'not-found' | 'invalid' | 'insecure';

/**
 * A request to change the user configuration that cannot be carried out: the
 * thing exists already, is missing, or the request itself is invalid; or
 * user.cfg itself may not be trusted (`insecure`). `code` is `ERR_CONFIG_` and
 * the problem in capitals.
 */
export class ConfigError extends TokenShadowError {
  readonly problem: ConfigProblem;
  constructor(problem: ConfigProblem, message: string, options?: { cause?: unknown }) {
    super(`ERR_CONFIG_${problem.toUpperCase().replace(/-/g, '_')}`, message, options);
    this.problem = problem;
  }
}

/** The access-control configuration was read with accessConfig() before `initAccessControl()`. */
export class AccessControlNotInitialisedError extends TokenShadowError {
  constructor(what: string) {
    super(
      'ERR_ACCESS_CONTROL_NOT_INITIALISED',
      `access control ${what} used before initAccessControl()`,
    );
  }
}

/** Why an authentication failed, for the server's log only. */
export type AuthenticationFailure =
  | 'missing-header'
  | 'malformed-header'
  /** A secret in token-shadow's form (tsk_...) whose checksum fails: refused before any lookup. */
  | 'bad-checksum'
  | 'too-long'
  | 'unknown-scheme'
  | 'disabled-scheme'
  | 'invalid-id'
  | 'inactive'
  | 'bad-secret'
  /** The right secret, from an address outside the token's allowed-ips. */
  | 'source';

/**
 * A request could not be authenticated. The message is the same for every
 * failure so that it tells a client nothing; `reason` is for the server's logs.
 */
export class AuthenticationError extends TokenShadowError {
  readonly reason: AuthenticationFailure;
  constructor(reason: AuthenticationFailure) {
    super('ERR_AUTHENTICATION', 'authentication failed');
    this.reason = reason;
  }
}

/**
 * The caller lacks a privilege the request needs (HTTP 403). The message names
 * the path and privileges that were missing, never what the caller holds.
 */
export class PermissionError extends TokenShadowError {
  constructor(message: string) {
    super('ERR_PERMISSION', message);
  }
}

/**
 * A request's parameters are malformed (HTTP 400); `errors` names each one
 * that is, as Proxmox VE reports them.
 */
export class ParameterError extends TokenShadowError {
  readonly errors: Record<string, string> | undefined;
  constructor(message: string, errors?: Record<string, string>) {
    super('ERR_PARAMETER', message);
    this.errors = errors;
  }
}

/**
 * The manager's refusal of a write an API worker forwarded, relayed as it
 * came over the socket: its HTTP status, message, per-parameter messages and
 * the stable code of the error the manager raised (ERR_API_<status> when it
 * sent none), so the worker answers and logs what the manager decided.
 */
export class ApiError extends TokenShadowError {
  readonly status: number;
  readonly errors: Record<string, string> | undefined;
  constructor(status: number, message: string, errors?: Record<string, string>, code?: string) {
    super(code ?? `ERR_API_${status}`, message);
    this.status = status;
    this.errors = errors;
  }
}

export type LastUsedFileProblem = 'unreadable' | 'bad-json' | 'bad-shape';

/** The manager's last-used file cannot be read; it holds ids and times, never secrets. */
export class LastUsedFileError extends TokenShadowError {
  readonly path: string;
  readonly problem: LastUsedFileProblem;
  constructor(path: string, problem: LastUsedFileProblem, detail: string) {
    super('ERR_LAST_USED_FILE', `${path}: ${detail}`);
    this.path = path;
    this.problem = problem;
  }
}

/**
 * The audit trail cannot be appended to (`corrupt`: its last line is not a
 * record), or its chain does not verify (`tampered`).
 */
export class AuditError extends TokenShadowError {
  readonly problem: 'corrupt' | 'tampered';
  constructor(problem: 'corrupt' | 'tampered', detail: string, options?: { cause?: unknown }) {
    super('ERR_AUDIT', detail, options);
    this.problem = problem;
  }
}

/**
 * The token database (access.db) cannot be opened, read or changed. A change
 * that fails with it was not stored (its transaction rolled back); messages
 * carry SQLite's reason, never a row's content.
 */
export class TokenDatabaseError extends TokenShadowError {
  readonly path: string;
  constructor(path: string, detail: string, options?: { cause?: unknown }) {
    super('ERR_TOKEN_DATABASE', path === '' ? detail : `${path}: ${detail}`, options);
    this.path = path;
  }
}
