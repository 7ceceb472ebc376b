/**
 * What a server does with one token request, whatever the framework: the
 * identity, or the reply the reference daemon gives — a bare 401 for every
 * authentication failure (it tells the client nothing), 503 with a message
 * when the hashing queue is full. Anything else is a server fault the
 * framework's own error handling answers (500). The fastify plugin and the
 * connect middleware are thin faces over this.
 */
import type { UserConfigStore } from '../access/user-info.js';
import { AuthenticationError, type AuthenticationFailure, BusyError } from '../errors.js';
import type { SecretVerifier } from '../shadow/secret-verifier.js';
import {
  type AuthenticationObserver,
  Authenticator,
  authenticateTimed,
  type Identity,
} from './authenticate.js';
import type { AuthorizationOptions, RequestHeaders } from './authorization.js';
import { httpFailureOf } from './status.js';

export interface TokenAuthOptions extends AuthorizationOptions {
  /** An Authenticator to use; otherwise one is made from `users` and `shadow`. */
  authenticator?: Authenticator;
  users?: UserConfigStore;
  shadow?: SecretVerifier;
  /** Told the seconds each slow-path authentication (a cache miss) took and how it ended. */
  onSlowAuthentication?: AuthenticationObserver;
  /** Called when a request is refused, with why (for logs; never the secret). */
  onRefused?: (reason: AuthenticationFailure | 'busy') => void;
}

/** The reply to a refused request: status and JSON body, as the daemon sends them. */
export interface Refusal {
  status: 401 | 503;
  body: { data: null; message?: string };
  reason: AuthenticationFailure | 'busy';
}

export type GuardOutcome = { identity: Identity } | { refusal: Refusal };

/** Takes the request itself (headers and rawHeaders), so a second Authorization header is refused. */
export type RequestGuard = (request: RequestHeaders) => Promise<GuardOutcome>;

/** The Authenticator given, or one made from the stores and header options. */
export function authenticatorOf(options: TokenAuthOptions): Authenticator {
  if (options.authenticator) return options.authenticator;
  if (!options.users || !options.shadow) {
    throw new TypeError('token auth needs an authenticator, or users and shadow');
  }
  const { users, shadow, schemes, maxHeaderLength, maxSecretBytes } = options;
  return new Authenticator({
    users,
    shadow,
    ...(schemes ? { schemes } : {}),
    ...(maxHeaderLength ? { maxHeaderLength } : {}),
    ...(maxSecretBytes ? { maxSecretBytes } : {}),
  });
}

/**
 * The refusal for an error authentication threw (statuses from the one map in
 * status.ts), or null when it is a server fault. A 401 says nothing at all.
 */
export function refusalOf(error: unknown): Refusal | null {
  if (error instanceof AuthenticationError) {
    return { status: 401, body: { data: null }, reason: error.reason };
  }
  const failure = httpFailureOf(error);
  if (error instanceof BusyError && failure.status === 503) {
    return { status: 503, body: { data: null, message: failure.message }, reason: 'busy' };
  }
  return null;
}

/** One function from request headers to an identity or a refusal; server faults throw. */
export function requestGuard(options: TokenAuthOptions): RequestGuard {
  const auth = authenticatorOf(options);
  return async (request) => {
    try {
      return { identity: await authenticateTimed(auth, request, options.onSlowAuthentication) };
    } catch (error) {
      const refusal = refusalOf(error);
      if (refusal === null) throw error;
      options.onRefused?.(refusal.reason);
      return { refusal };
    }
  };
}
