/**
 * The fastify onRequest hook that authenticates a request: the Authenticator
 * plus the per-source penalties, shaped for the hot path.
 *
 * A callback hook, not an async one: a cached token is answered synchronously
 * and `done()` is called in the same tick, so a request pays no promise and no
 * extra turn of the event loop; only a cache miss takes the async path, timed
 * for the histogram (authenticateTimed, the driver the guard uses too).
 *
 * Failures (401, and 503 when the hashing queue is full) count against the
 * request's source; a response to a failing direct peer closes its
 * connection, so each further try must pass the connection gate of
 * SourcePenalties.guard. A penalised source gets 429 before its
 * Authorization header is even read.
 */
import type { FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify';
import { AuthenticationError, BusyError } from '../errors.js';
import {
  type AuthenticationObserver,
  type Authenticator,
  authenticateTimed,
  type Identity,
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

  const failed = (request: FastifyRequest, reply: FastifyReply, error: unknown) => {
    if (
      penalties !== null &&
      (error instanceof AuthenticationError || error instanceof BusyError)
    ) {
      const peer = request.socket.remoteAddress;
      const source = penalties.sourceOf(peer, request.headers['x-forwarded-for']);
      penalties.recordFailure(source);
      // A proxy's connection carries other clients too: only a direct peer's is closed.
      if (peer === undefined || !penalties.isTrustedProxy(peer))
        reply.header('connection', 'close');
    }
  };

  return (request, reply, done) => {
    // A calm server (no source with failures) skips the peer and header lookups entirely.
    if (penalties?.tracking === true) {
      const peer = request.socket.remoteAddress;
      const source = penalties.sourceOf(peer, request.headers['x-forwarded-for']);
      if (penalties.isPenalised(source)) {
        penalties.countRefusedRequest();
        if (peer === undefined || !penalties.isTrustedProxy(peer)) {
          reply.header('connection', 'close');
        }
        reply.code(429).header('retry-after', '1').send({ data: null });
        return;
      }
    }
    let identity: Identity | Promise<Identity>;
    try {
      identity = authenticateTimed(auth, request.raw, onSlowAuthentication);
    } catch (error) {
      failed(request, reply, error);
      done(error as Error);
      return;
    }
    if (!(identity instanceof Promise)) {
      request.identity = identity;
      done();
      return;
    }
    identity.then(
      (verified) => {
        request.identity = verified;
        done();
      },
      (error: unknown) => {
        failed(request, reply, error);
        done(error as Error);
      },
    );
  };
}
