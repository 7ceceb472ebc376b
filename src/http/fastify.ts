/**
 * The fastify face: a plugin that puts `request.identity` on every request
 * and `app.authenticateToken`, an onRequest hook to guard routes with. With
 * `{ global: true }` it guards every route of the instance it is registered
 * on. The hook is the daemon's own (request-hook.ts: a cached token is
 * answered in the same tick, optional per-source penalties); refusals are
 * answered here as the daemon answers them (401, 503), so an app's error
 * handler never sees them.
 *
 *   await app.register(tokenAuth, { users, shadow });
 *   app.get('/me', { onRequest: [app.authenticateToken] }, (req) => req.identity);
 */
import type { FastifyPluginAsync } from 'fastify';
import fastifyPlugin from 'fastify-plugin';
import { authenticatorOf, refusalOf, type TokenAuthOptions } from './guard.js';
import { type AuthenticationHook, authenticationHook } from './request-hook.js';
import type { SourcePenalties } from './source-penalties.js';

export interface FastifyTokenAuthOptions extends TokenAuthOptions {
  /** Guard every route of this instance (default false: routes opt in with the hook). */
  global?: boolean;
  /** Per-source failure budgets (429 for a penalised source); none by default. */
  penalties?: SourcePenalties | null;
}

/** A callback-style onRequest hook: it calls `done` or answers the request itself. */
export type TokenAuthHook = AuthenticationHook;

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook: authenticates the request (sets `request.identity`) or replies 401/503. */
    authenticateToken: TokenAuthHook;
  }
}

/** The hook alone, for servers that wire hooks themselves (the reference daemon). */
export function tokenAuthHook(options: FastifyTokenAuthOptions): TokenAuthHook {
  const { onSlowAuthentication, onRefused } = options;
  const hook = authenticationHook({
    auth: authenticatorOf(options),
    penalties: options.penalties ?? null,
    ...(onSlowAuthentication ? { onSlowAuthentication } : {}),
  });
  return (request, reply, done) => {
    hook(request, reply, (error?: Error) => {
      const refusal = error === undefined ? null : refusalOf(error);
      if (refusal === null) {
        done(error);
        return;
      }
      onRefused?.(refusal.reason);
      if (refusal.status === 401) {
        request.log.info({ reason: refusal.reason }, 'authentication failed');
      }
      reply.code(refusal.status).send(refusal.body);
    });
  };
}

const plugin: FastifyPluginAsync<FastifyTokenAuthOptions> = async (app, options) => {
  const hook = tokenAuthHook(options);
  app.decorateRequest('identity', null);
  app.decorate('authenticateToken', hook);
  if (options.global) app.addHook('onRequest', hook);
};

/** The plugin; not encapsulated, so the decorations reach the instance it is registered on. */
export const tokenAuth = fastifyPlugin(plugin, { fastify: '5.x', name: 'token-shadow' });
