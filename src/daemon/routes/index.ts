/**
 * The API routes under /api2/json, following Proxmox VE's conventions: a
 * `{"data": ...}` envelope, form-urlencoded or JSON bodies, 401 for failed
 * authentication, 403 for a missing privilege, 400 with per-parameter errors,
 * 503 when the hashing queue is full. Each resource's routes are in their own
 * module, each route one operation of the service's table.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { UserConfigStore } from '../../access/user-info.js';
import type { AuthenticationObserver, Authenticator } from '../../http/authenticate.js';
import { tokenAuthHook } from '../../http/fastify.js';
import type { SourcePenalties } from '../../http/source-penalties.js';
import { errorCode, httpFailureOf } from '../../http/status.js';
import type { LastUsedLookup } from '../../service/answers.js';
import { VERSION } from '../../version.js';
import { OPENAPI_PATH, openApiDocument, recordRoutes } from '../openapi.js';
import type { RpcClient } from '../rpc.js';
import { registerAclRoutes } from './acl.js';
import { registerClusterRoutes } from './cluster.js';
import { registerGroupRoutes } from './groups.js';
import { registerLeakedSecretRoutes } from './leaked-secrets.js';
import { registerPermissionRoutes } from './permissions.js';
import { registerPoolRoutes } from './pools.js';
import { registerRoleRoutes } from './roles.js';
import { registerTokenRoutes } from './tokens.js';
import { registerUserRoutes } from './users.js';

/** GET /version's answer, shaped as PVE's: this package's version and its major.minor. */
export const VERSION_ANSWER = Object.freeze({
  version: VERSION,
  release: VERSION.split('.').slice(0, 2).join('.'),
  repoid: 'token-shadow',
});

export interface RoutesOptions {
  auth: Authenticator;
  users: UserConfigStore;
  rpc: RpcClient;
  /** GET /version without authentication (benchmark baseline). */
  publicVersion?: boolean;
  /** Per-source failure budgets (none: no penalties). */
  penalties?: SourcePenalties | null;
  /** Called with the seconds each slow-path authentication (a cache miss) took (metrics). */
  onAuthenticated?: AuthenticationObserver;
  /** Last use per token, for `last-used` in the token answers. */
  lastUsed?: () => Promise<LastUsedLookup>;
}

/** Maps a fastify schema failure to PVE's per-parameter error object. */
function parameterErrors(error: FastifyError): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const v of error.validation ?? []) {
    const missing = (v.params as { missingProperty?: string }).missingProperty;
    const name = missing ?? v.instancePath.replace(/^\//, '').split('/')[0] ?? 'parameter';
    errors[name || 'parameter'] = missing
      ? 'property is missing and it is not optional'
      : (v.message ?? 'invalid');
  }
  return errors;
}

export function registerRoutes(app: FastifyInstance, options: RoutesOptions): void {
  app.decorateRequest('identity', null);
  // PVE clients POST without a body when every parameter is optional.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      return reply.code(400).send({ data: null, errors: parameterErrors(error) });
    }
    const failure = httpFailureOf(error);
    if (failure.status === 401) {
      request.log.info({ reason: (error as { reason?: string }).reason }, 'authentication failed');
      return reply.code(401).send({ data: null });
    }
    if (failure.status >= 500 && failure.status !== 503) {
      request.log.error({ err: errorCode(error) }, 'request failed');
    }
    const { status, ...body } = failure;
    return reply.code(status).send({ data: null, ...body });
  });

  // The library's fastify hook: what an app author gets is what the daemon runs.
  const authenticate = tokenAuthHook({
    authenticator: options.auth,
    penalties: options.penalties ?? null,
    ...(options.onAuthenticated ? { onSlowAuthentication: options.onAuthenticated } : {}),
  });
  const ctx = {
    users: options.users,
    rpc: options.rpc,
    authenticate,
    clientAddress: (request: IncomingMessage) => options.auth.clientAddressOf(request),
    ...(options.lastUsed ? { lastUsed: options.lastUsed } : {}),
  };

  const described = recordRoutes(app, '/api2/json');
  let description: object | null = null;
  // Public, as the routes' shapes are: it says nothing about the deployment.
  app.get(OPENAPI_PATH, async () => {
    description ??= openApiDocument(described, VERSION);
    return description;
  });

  app.register(
    async (api) => {
      api.get('/version', { onRequest: options.publicVersion ? [] : [authenticate] }, async () => ({
        data: VERSION_ANSWER,
      }));
      registerPermissionRoutes(api, ctx);
      registerUserRoutes(api, ctx);
      registerTokenRoutes(api, ctx);
      registerAclRoutes(api, ctx);
      registerGroupRoutes(api, ctx);
      registerRoleRoutes(api, ctx);
      registerPoolRoutes(api, ctx);
      registerClusterRoutes(api, ctx);
      registerLeakedSecretRoutes(api, ctx, options.penalties ?? null);
    },
    { prefix: '/api2/json' },
  );
}
