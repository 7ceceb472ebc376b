/**
 * token-shadow/fastify: the fastify plugin, apart from the core so that a
 * library user without fastify installs none of it. Needs `fastify` and
 * `fastify-plugin` installed next to token-shadow (optional peer
 * dependencies of the package): `import { tokenAuth } from 'token-shadow/fastify'`,
 * then `await app.register(tokenAuth, { users, shadow })`.
 *
 * @packageDocumentation
 */

export {
  type FastifyTokenAuthOptions,
  type TokenAuthHook,
  tokenAuth,
  tokenAuthHook,
} from './http/fastify.js';
// The plugin's `penalties` option: per-source failure budgets (429 while a source is penalised).
export { SourcePenalties, type SourcePenaltyOptions } from './http/source-penalties.js';
