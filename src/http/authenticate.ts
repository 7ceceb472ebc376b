/**
 * authenticate(headers): the whole check of a token request, from the header
 * to the identity the privilege checks take (the token id is parsed once, by
 * the header parser, and carried through). Syntax, then
 * whether the token is active (user and token enabled, not expired), then the
 * secret through the token.shadow cache. Every failure is the same
 * AuthenticationError (a bare 401); the secret is checked even for an
 * inactive or unknown token, so the work done does not tell them apart.
 */
import type { IncomingHttpHeaders } from 'node:http';
import type { UserConfigStore } from '../access/user-info.js';
import { currentEpochSeconds, isTokenActive } from '../config/active.js';
import { AuthenticationError } from '../errors.js';
import type { Tokenid } from '../ids.js';
import type { TokenShadow } from '../shadow/token-shadow.js';
import type { UseRecorder } from '../usage/notes.js';
import {
  type AuthorizationOptions,
  authorizationOf,
  parseCredentials,
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
  shadow: TokenShadow;
  /** Epoch seconds, for expiry; tests substitute their own. */
  now?: () => number;
  /** Told of every successful authentication (last use per token, in memory). */
  usage?: UseRecorder;
}

/** Authenticates a request by its Authorization header: the whole check, from header to identity. */
export class Authenticator {
  #users: UserConfigStore;
  #shadow: TokenShadow;
  #now: () => number;
  #header: AuthorizationOptions;
  #usage: UseRecorder | undefined;

  constructor(options: AuthenticatorOptions) {
    this.#users = options.users;
    this.#shadow = options.shadow;
    this.#now = options.now ?? currentEpochSeconds;
    this.#usage = options.usage;
    this.#header = {
      ...(options.schemes ? { schemes: options.schemes } : {}),
      ...(options.maxHeaderLength ? { maxHeaderLength: options.maxHeaderLength } : {}),
      ...(options.maxSecretBytes ? { maxSecretBytes: options.maxSecretBytes } : {}),
    };
  }

  /**
   * The synchronous fast path: the identity when the cache proves the secret
   * right now (same generation, within the TTL), undefined when only
   * authenticate() can tell. A malformed header throws AuthenticationError at
   * once: no I/O is needed to know. No promise, and the id is parsed once.
   */
  authenticateCached(
    request: RequestHeaders | IncomingHttpHeaders | string | undefined,
  ): Identity | undefined {
    const { id, secret } = parseCredentials(authorizationValue(request), this.#header);
    const config = this.#users.current();
    if (config === null || this.#shadow.verifyCached(id.authid, secret) !== true) return undefined;
    if (!isTokenActive(config, id, this.#now())) throw new AuthenticationError('inactive');
    return this.#accepted(id);
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
    const value = authorizationValue(request);
    const { id, secret } = parseCredentials(value, this.#header);
    const config = this.#users.current() ?? (await this.#users.get());
    const active = isTokenActive(config, id, this.#now());
    const verified =
      this.#shadow.verifyCached(id.authid, secret) ??
      (await this.#shadow.verifySecret(id.authid, secret));
    if (!verified) throw new AuthenticationError('bad-secret');
    if (!active) throw new AuthenticationError('inactive');
    return this.#accepted(id);
  }

  /** Every successful authentication ends here: noted for last-used, then the identity. */
  #accepted(id: Tokenid): Identity {
    this.#usage?.note(id.authid);
    return { authid: id.authid, userid: id.userid, tokenName: id.tokenName };
  }
}
