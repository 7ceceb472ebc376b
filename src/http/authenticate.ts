/**
 * authenticate(headers): the whole check of a token request, from the header
 * to the identity the privilege checks take. Syntax, then whether the token
 * is active (user and token enabled, not expired), then the secret through
 * the token.shadow cache, then, for a token with `allowed-ips`, where the
 * request comes from. Every failure is the same AuthenticationError (a bare
 * 401); the secret is checked even for an inactive or unknown token, so the
 * work done does not tell them apart.
 *
 * During a rotation's grace (user.cfg's graceUntil) the secret before the
 * rotation, kept in token.shadow under previousSecretId, is accepted too, on
 * every request only while the grace lasts; its uses are noted under that id
 * so that an operator sees whether clients moved.
 *
 * One driver for every caller: `attempt` tries the cache in the same tick and
 * answers the identity or a CacheMiss holding the parsed header, from which
 * `afterCacheMiss` continues on the slow path; so a request's header is parsed
 * once whichever path it takes. `authenticateTimed` is that driver as the
 * request hooks run it, timing only the slow path.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { UserConfigStore } from '../access/user-info.js';
import { currentEpochSeconds, isTokenActive, tokenActiveUntil } from '../config/active.js';
import { type SourceRestriction, sourceRestrictionOf } from '../config/allowed-ips.js';
import type { TokenEntry, UserConfig } from '../config/types.js';
import { AuthenticationError, BusyError } from '../errors.js';
import { previousSecretId, type Tokenid } from '../ids.js';
import type { SecretVerifier } from '../shadow/secret-verifier.js';
import type { UseRecorder } from '../usage/notes.js';
import {
  type AuthorizationOptions,
  authorizationOf,
  DEFAULT_MAX_HEADER_LENGTH,
  DEFAULT_MAX_SECRET_BYTES,
  type ParsedCredentials,
  PVE_CREDENTIALS_START,
  parseCredentials,
  pveCredentialsSplit,
  type RequestHeaders,
} from './authorization.js';

/** A request rather than its headers: header names are lowercase, so no header is `rawHeaders`. */
function isRequest(value: RequestHeaders | IncomingHttpHeaders): value is RequestHeaders {
  return Array.isArray((value as RequestHeaders).rawHeaders);
}

function authorizationValue(
  request: RequestHeaders | IncomingHttpHeaders | string | undefined,
): string | string[] | undefined {
  if (typeof request !== 'object') return request;
  return isRequest(request) ? authorizationOf(request) : request.authorization;
}

/** The authenticated token: its id and the parts of it the privilege checks take. */
export interface Identity {
  /** The token id, `USER@REALM!TOKEN`. */
  authid: string;
  userid: string;
  tokenName: string;
}

/** The stores the checks read, the accepted header forms and limits, and the clock. */
export interface AuthenticatorOptions extends AuthorizationOptions {
  users: UserConfigStore;
  shadow: SecretVerifier;
  /** Epoch seconds, for expiry; tests substitute their own. */
  now?: () => number;
  /** Told of every successful authentication (last use per token, in memory). */
  usage?: UseRecorder;
  /**
   * The address a request comes from, for tokens with `allowed-ips` and last
   * use: the daemon's answers as its penalties do (behind a trusted proxy,
   * the client it names). Default: the request's socket peer; a bare header
   * has none, and a restricted token is then refused.
   */
  clientAddress?: (
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ) => string | undefined;
  /** Told when a right secret is refused for its source, or a previous secret is used. */
  onPolicyEvent?: (event: PolicyEvent) => void;
}

/** What token policy saw on a request that is worth telling outside the process. */
export interface PolicyEvent {
  kind: 'source-refused' | 'previous-secret-used';
  tokenid: string;
  source: string | undefined;
  /** A previous secret used after its grace ended (refused): the client never moved. */
  afterGrace?: boolean;
}

/** A token accepted under one config: its identity, until when the config lets it act, from where. */
interface Accepted {
  identity: Identity;
  until: number;
  sources: SourceRestriction | null;
}

/** The request's socket peer, as a dual-stack socket reports it (IPv4 unmapped later). */
function peerOf(
  request: RequestHeaders | IncomingHttpHeaders | string | undefined,
): string | undefined {
  if (typeof request !== 'object') return undefined;
  return (request as { socket?: { remoteAddress?: string } }).socket?.remoteAddress;
}

function tokenOf(config: UserConfig, id: Tokenid): TokenEntry | undefined {
  return config.users.get(id.userid)?.tokens.get(id.tokenName);
}

/** Whether the token's previous secret (a rotation's) still works at `now`. */
function graceOpen(token: TokenEntry | undefined, now: number): boolean {
  return token?.graceUntil !== undefined && now < token.graceUntil;
}

/** Most tokens the fast path remembers per config (then it starts afresh). */
const MAX_ACCEPTED = 16_384;

/** The memo knows the token, and the cache did not prove this secret for it. */
const KNOWN_UNCACHED = Symbol('known token, secret not cached');

let secretOf: (miss: CacheMiss) => string;
let requestOf: (miss: CacheMiss) => RequestHeaders | IncomingHttpHeaders | string | undefined;

/**
 * What a cached attempt that could not decide leaves the slow path: the
 * parsed token id, the config it was checked under (null: none cached yet)
 * and, in a private field no log or JSON can reach, the secret.
 */
export class CacheMiss {
  readonly id: Tokenid;
  readonly config: UserConfig | null;
  readonly #secret: string;
  /** The request, for where it comes from (allowed-ips, last use); it holds the secret too. */
  readonly #request: RequestHeaders | IncomingHttpHeaders | string | undefined;

  constructor(
    credentials: ParsedCredentials,
    config: UserConfig | null,
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ) {
    this.id = credentials.id;
    this.config = config;
    this.#request = request;
    this.#secret = credentials.secret;
  }

  static {
    secretOf = (miss) => miss.#secret;
    requestOf = (miss) => miss.#request;
  }
}

/** How an authentication ended: accepted, refused (401) or busy (503: the hashing queue is full). */
export type AuthenticationOutcome = 'ok' | 'refused' | 'busy';
/** Told the seconds a slow-path authentication took and how it ended. */
export type AuthenticationObserver = (seconds: number, outcome: AuthenticationOutcome) => void;

/** Authenticates a request by its Authorization header: the whole check, from header to identity. */
export class Authenticator {
  #users: UserConfigStore;
  #shadow: SecretVerifier;
  #now: () => number;
  #header: AuthorizationOptions;
  #usage: UseRecorder | undefined;
  #clientAddress: (
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ) => string | undefined;
  #onPolicyEvent: ((event: PolicyEvent) => void) | undefined;
  /** The header limits for the memo's split; null when the PVEAPIToken form is not accepted. */
  #pveLimits: { maxHeaderLength: number; maxSecretBytes: number } | null;
  /**
   * Tokens accepted under `#acceptedConfig`, by id: a request for one of them
   * is answered from its PVEAPIToken header's two slices, the verified-secret
   * cache and this entry, without parsing the header again or looking the
   * token up in the config. Only ids that passed the full parse and the
   * activity check are here, and the cache holds only secrets that passed
   * it, so a hit proves the header well-formed. A new config object (any
   * change of user.cfg) empties it.
   */
  #accepted = new Map<string, Accepted>();
  #acceptedConfig: UserConfig | null = null;
  /** The users store's tokensGeneration() the memo was made under (tokens kept in the database). */
  #acceptedTokens = 0;

  constructor(options: AuthenticatorOptions) {
    this.#users = options.users;
    this.#shadow = options.shadow;
    this.#now = options.now ?? currentEpochSeconds;
    this.#usage = options.usage;
    this.#clientAddress = options.clientAddress ?? peerOf;
    this.#onPolicyEvent = options.onPolicyEvent;
    this.#header = {
      ...(options.schemes ? { schemes: options.schemes } : {}),
      ...(options.maxHeaderLength ? { maxHeaderLength: options.maxHeaderLength } : {}),
      ...(options.maxSecretBytes ? { maxSecretBytes: options.maxSecretBytes } : {}),
    };
    this.#pveLimits =
      options.schemes === undefined || options.schemes.includes('PVEAPIToken')
        ? {
            maxHeaderLength: options.maxHeaderLength ?? DEFAULT_MAX_HEADER_LENGTH,
            maxSecretBytes: options.maxSecretBytes ?? DEFAULT_MAX_SECRET_BYTES,
          }
        : null;
  }

  /** Where `request` comes from, as allowed-ips and last use see it (options.clientAddress). */
  clientAddressOf(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): string | undefined {
    return this.#clientAddress(request);
  }

  /**
   * The synchronous fast path: the identity when the cache proves the secret
   * right now (same generation, within the TTL), undefined when only
   * authenticate() can tell. A malformed header throws AuthenticationError at
   * once: no I/O is needed to know. No promise.
   */
  authenticateCached(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Identity | undefined {
    const attempt = this.attempt(request);
    return attempt instanceof CacheMiss ? undefined : attempt;
  }

  /**
   * The identity behind the request, or AuthenticationError (BusyError when
   * hashing is saturated). Give it the request itself (an IncomingMessage, or
   * anything with `headers` and `rawHeaders`) so that a second Authorization
   * header is refused; plain headers or a header value work too.
   */
  async authenticate(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Promise<Identity> {
    const attempt = this.attempt(request);
    return attempt instanceof CacheMiss ? this.afterCacheMiss(attempt) : attempt;
  }

  /**
   * The cached attempt, in this tick: the identity when the cache proves the
   * secret, else a CacheMiss carrying the parsed header for afterCacheMiss to
   * continue from (nothing is parsed or looked up twice). Throws
   * AuthenticationError for a malformed header or an expired token.
   * @internal The library's own hooks drive it (authenticateTimed).
   */
  attempt(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Identity | CacheMiss {
    const value = authorizationValue(request);
    const config = this.#users.current();
    const known = this.#knownToken(value, config, request);
    if (known !== undefined && known !== KNOWN_UNCACHED) return known;
    const credentials = parseCredentials(value, this.#header);
    const { id, secret } = credentials;
    if (config === null) return new CacheMiss(credentials, config, request);
    // The memo asked the cache about these very two parts already (its id is the parser's own).
    if (known === KNOWN_UNCACHED || this.#shadow.verifyCached(id.authid, secret) !== true) {
      // A client still on the previous secret of a rotation, cached: answered in this tick too.
      const now = this.#now();
      if (
        graceOpen(tokenOf(config, id), now) &&
        this.#shadow.verifyCached(previousSecretId(id.authid), secret) === true
      ) {
        if (!isTokenActive(config, id, now)) throw new AuthenticationError('inactive');
        return this.#accept(id, config, request, true);
      }
      return new CacheMiss(credentials, config, request);
    }
    if (!isTokenActive(config, id, this.#now())) throw new AuthenticationError('inactive');
    return this.#accept(id, config, request);
  }

  /**
   * The slow path after `attempt` missed: the config if there was none cached,
   * whether the token is active, and the secret through the hashing pool.
   * @internal
   */
  async afterCacheMiss(miss: CacheMiss): Promise<Identity> {
    const id = miss.id;
    const config = miss.config ?? (await this.#users.get());
    const now = this.#now();
    const active = isTokenActive(config, id, now);
    const secret = secretOf(miss);
    // The secret is checked even for an inactive token: the work done does not tell them apart.
    if (await this.#shadow.verifySecret(id.authid, secret)) {
      if (!active) throw new AuthenticationError('inactive');
      return this.#accept(id, config, requestOf(miss));
    }
    // A token rotated with a grace: its previous secret is tried too (a second hash only for
    // such a token), during the grace to accept it, after it to say that a client never moved.
    const token = tokenOf(config, id);
    if (
      token?.graceUntil === undefined ||
      !(await this.#shadow.verifySecret(previousSecretId(id.authid), secret))
    ) {
      throw new AuthenticationError('bad-secret');
    }
    // The grace may have ended, or the config changed, while it hashed.
    if (graceOpen(tokenOf(await this.#users.get(), id), this.#now())) {
      if (!active) throw new AuthenticationError('inactive');
      return this.#accept(id, config, requestOf(miss), true);
    }
    const source = this.#clientAddress(requestOf(miss));
    this.#onPolicyEvent?.({
      kind: 'previous-secret-used',
      tokenid: id.authid,
      source,
      afterGrace: true,
    });
    throw new AuthenticationError('bad-secret');
  }

  /**
   * authenticate() for a caller that must cost no hash (a source penalised
   * for its failures): the identity when the verified-secret cache proves the
   * secret, once the slow path's checks are made; undefined when only a hash
   * could tell. Refuses as authenticate() does otherwise.
   */
  async authenticateWithoutHashing(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Promise<Identity | undefined> {
    const attempt = this.attempt(request);
    return attempt instanceof CacheMiss ? this.afterCacheMissWithoutHashing(attempt) : attempt;
  }

  /**
   * afterCacheMiss without the hashing pool: the secret only as the cache (or
   * a fresh look at token.shadow against the cached hash) proves it.
   * @internal
   */
  async afterCacheMissWithoutHashing(miss: CacheMiss): Promise<Identity | undefined> {
    const id = miss.id;
    const config = miss.config ?? (await this.#users.get());
    const now = this.#now();
    const active = isTokenActive(config, id, now);
    const secret = secretOf(miss);
    let previous = false;
    if ((await this.#shadow.verifyWithoutHashing(id.authid, secret)) !== true) {
      if (!graceOpen(tokenOf(config, id), now)) return undefined;
      const previousId = previousSecretId(id.authid);
      if ((await this.#shadow.verifyWithoutHashing(previousId, secret)) !== true) return undefined;
      previous = true;
    }
    if (!active) throw new AuthenticationError('inactive');
    return this.#accept(id, config, requestOf(miss), previous);
  }

  /**
   * A PVEAPIToken header of a token accepted under the current `config`: its
   * identity when the cache proves its secret (AuthenticationError once it
   * expired), KNOWN_UNCACHED when it does not, else undefined and the full
   * parse decides.
   */
  #knownToken(
    value: string | string[] | undefined,
    config: UserConfig | null,
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Identity | typeof KNOWN_UNCACHED | undefined {
    if (typeof value !== 'string' || config === null || config !== this.#acceptedConfig) {
      return undefined;
    }
    // Tokens kept in the database change without user.cfg: their announcement voids the memo.
    if (this.#users.tokensGeneration() !== this.#acceptedTokens) return undefined;
    const at = this.#pveLimits === null ? -1 : pveCredentialsSplit(value, this.#pveLimits);
    if (at < 0) return undefined;
    const tokenid = value.slice(PVE_CREDENTIALS_START, at);
    const known = this.#accepted.get(tokenid);
    if (known === undefined) return undefined;
    if (this.#shadow.verifyCached(tokenid, value.slice(at + 1)) !== true) return KNOWN_UNCACHED;
    if (known.until !== Number.POSITIVE_INFINITY && this.#now() >= known.until) {
      throw new AuthenticationError('inactive');
    }
    const source = this.#clientAddress(request);
    if (known.sources !== null && !known.sources.allows(source)) {
      this.#refuseSource(known.identity.authid, source);
    }
    this.#usage?.note(known.identity.authid, source);
    return known.identity;
  }

  /** A right secret from a source its token does not allow: a 401 like any other, and told. */
  #refuseSource(tokenid: string, source: string | undefined): never {
    this.#onPolicyEvent?.({ kind: 'source-refused', tokenid, source });
    throw new AuthenticationError('source');
  }

  /**
   * Every successful authentication ends here: the source checked against the
   * token's allowed-ips, remembered for the fast path (a current secret only),
   * noted for last use (a previous secret under its own id).
   */
  #accept(
    id: Tokenid,
    config: UserConfig,
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
    previous = false,
  ): Identity {
    const source = this.#clientAddress(request);
    const tokens = this.#users.tokensGeneration();
    const current = this.#acceptedConfig === config && this.#acceptedTokens === tokens;
    let known = current ? this.#accepted.get(id.authid) : undefined;
    if (known === undefined) {
      const identity: Identity = Object.freeze({
        authid: id.authid,
        userid: id.userid,
        tokenName: id.tokenName,
      });
      if (!current || this.#accepted.size >= MAX_ACCEPTED) {
        this.#accepted.clear();
        this.#acceptedConfig = config;
        this.#acceptedTokens = tokens;
      }
      const sources = sourceRestrictionOf(tokenOf(config, id)?.allowedIps ?? '');
      known = { identity, until: tokenActiveUntil(config, id), sources };
      // id.authid is the parser's own copy, never a slice of a header holding a secret.
      this.#accepted.set(id.authid, known);
    }
    if (known.sources !== null && !known.sources.allows(source)) {
      this.#refuseSource(id.authid, source);
    }
    if (previous) {
      this.#usage?.note(previousSecretId(id.authid), source);
      this.#onPolicyEvent?.({ kind: 'previous-secret-used', tokenid: id.authid, source });
    } else this.#usage?.note(id.authid, source);
    return known.identity;
  }
}

/**
 * A request's authentication as the hooks run it: the identity itself when
 * the cache proves it (no promise: a hook can answer in the same tick),
 * otherwise the slow path's promise, timed for `observe` with how it ended.
 * Nothing is timed on the fast path (the cache's hit counter says how often
 * it ran); tens of milliseconds of hashing make two clock reads invisible.
 * A malformed header throws at once.
 */
export function authenticateTimed(
  auth: Authenticator,
  request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  observe?: AuthenticationObserver,
): Identity | Promise<Identity> {
  const attempt = auth.attempt(request);
  return attempt instanceof CacheMiss ? slowPathTimed(auth, attempt, observe) : attempt;
}

/**
 * The slow path after a cache miss, timed for `observe` with how it ended:
 * authenticateTimed's second half, for a hook that looks at the request
 * between the two (the penalties, which must not start a hash for a
 * penalised source).
 * @internal
 */
export function slowPathTimed(
  auth: Authenticator,
  attempt: CacheMiss,
  observe?: AuthenticationObserver,
): Promise<Identity> {
  if (observe === undefined) return auth.afterCacheMiss(attempt);
  const start = process.hrtime.bigint();
  const seconds = () => Number(process.hrtime.bigint() - start) / 1e9;
  return auth.afterCacheMiss(attempt).then(
    (identity) => {
      observe(seconds(), 'ok');
      return identity;
    },
    (error: unknown) => {
      // A server fault (a corrupt token.shadow, say) took the time too: counted with the refusals.
      observe(seconds(), error instanceof BusyError ? 'busy' : 'refused');
      throw error;
    },
  );
}
