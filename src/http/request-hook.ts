/**
 * The fastify onRequest hook that authenticates a request: the Authenticator
 * plus the per-source penalties, shaped for the hot path.
 *
 * A callback hook, not an async one: a cached token is answered synchronously
 * and `done()` is called in the same tick, so a request pays no promise and no
 * extra turn of the event loop; only a cache miss takes the async path, timed
 * for the histogram (the driver's attempt and slowPathTimed, which
 * authenticateTimed, the guard's, runs in one).
 *
 * A 401 counts against the request's source and closes a direct peer's
 * connection; a 503 (the hashing queue is full) only when the source has
 * another request of its own waiting for a hash: its receiver need not have
 * caused it. A penalised source is served only what the verified-secret cache
 * proves, which is why the cache is asked first: everything that would cost
 * a hash is refused (SourcePenalties.refuse).
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { AuthenticationError, BusyError } from '../errors.js';
import {
  type AuthenticationObserver,
  type Authenticator,
  CacheMiss,
  type Identity,
  slowPathTimed,
} from './authenticate.js';
import type { SourcePenalties } from './source-penalties.js';

export interface RequestHookOptions {
  auth: Authenticator;
  /** Per-source failure budgets; none: no penalties. */
  penalties?: SourcePenalties | null;
  /**
   * Called for each slow-path authentication (a cache miss), refusals too: a
   * flood of wrong secrets costs hashes and must show in the histogram.
   */
  onSlowAuthentication?: AuthenticationObserver;
}

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null;
  }
}

export type AuthenticationHook = (
  request: FastifyRequest,
  reply: FastifyReply,
  done: HookHandlerDoneFunction,
) => void;

/** The hook; register `request.identity` (decorateRequest('identity', null)) before using it. */
export function authenticationHook(options: RequestHookOptions): AuthenticationHook {
  const { auth, onSlowAuthentication } = options;
  const penalties = options.penalties ?? null;

  /**
   * A 401 is charged to the request's source. A 503 only when the source has
   * another request of its own waiting for a hash (`waiting`): then it helps
   * keep the queue full; otherwise an attacker on many addresses could fill
   * the queue and have the victim charged for the 503s it gets.
   */
  const failed = (request: FastifyRequest, reply: FastifyReply, error: unknown, waiting = 0) => {
    const charged =
      error instanceof AuthenticationError || (error instanceof BusyError && waiting > 0);
    if (penalties !== null && charged) {
      const peer = request.socket.remoteAddress;
      const source = penalties.sourceOf(peer, request.headers['x-forwarded-for']);
      penalties.recordFailure(source);
      // A proxy's connection carries other clients too: only a direct peer's is closed.
      if (peer === undefined || !penalties.isTrustedProxy(peer))
        reply.header('connection', 'close');
    }
  };

  /**
   * Penalties, once the cache could not accept the request at once: true when
   * its source is penalised and this took the request over. It then gets only
   * what costs no hash: the cache's answer after the slow path's file checks
   * (a valid token is accepted), else the refusal (held, then 429); a
   * request the fast path refused (`miss` null) is refused outright.
   */
  const tookOverPenalised = (
    request: FastifyRequest,
    reply: FastifyReply,
    done: HookHandlerDoneFunction,
    miss: CacheMiss | null,
  ): boolean => {
    // A calm server (no source with failures) skips the peer and header lookups entirely.
    if (penalties?.tracking !== true) return false;
    const peer = request.socket.remoteAddress;
    if (!penalties.isPenalised(penalties.sourceOf(peer, request.headers['x-forwarded-for']))) {
      return false;
    }
    // A proxy's connection carries other clients too: it is neither held nor closed.
    const direct = peer === undefined || !penalties.isTrustedProxy(peer);
    const refuse = () =>
      penalties.refuse(direct ? request.socket : null, () => {
        if (direct) reply.header('connection', 'close');
        reply.code(429).header('retry-after', '1').send({ data: null });
      });
    if (miss === null) {
      refuse();
      return true;
    }
    auth.afterCacheMissWithoutHashing(miss).then((identity) => {
      if (identity === undefined) {
        refuse();
        return;
      }
      request.identity = identity;
      done();
    }, refuse);
    return true;
  };

  return (request, reply, done) => {
    let attempt: Identity | CacheMiss;
    try {
      attempt = auth.attempt(request.raw);
    } catch (error) {
      if (tookOverPenalised(request, reply, done, null)) return;
      failed(request, reply, error);
      done(error as Error);
      return;
    }
    // A valid token the cache proves is accepted whatever its source's failures (issue 22).
    if (!(attempt instanceof CacheMiss)) {
      request.identity = attempt;
      done();
      return;
    }
    if (tookOverPenalised(request, reply, done, attempt)) return;
    const source =
      penalties?.sourceOf(request.socket.remoteAddress, request.headers['x-forwarded-for']) ?? '';
    const leave = penalties?.enterSlowPath(source);
    slowPathTimed(auth, attempt, onSlowAuthentication).then(
      (verified) => {
        leave?.();
        request.identity = verified;
        done();
      },
      (error: unknown) => {
        leave?.();
        failed(request, reply, error, penalties?.onSlowPath(source));
        done(error as Error);
      },
    );
  };
}
