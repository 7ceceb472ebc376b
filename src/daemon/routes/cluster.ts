/**
 * GET /cluster/token-shadow: the cluster as this host sees it (every host's
 * registration, acked revision and lease left; this host's fence), or
 * `{mode: "single-host"}`. Only the manager holds etcd's credentials, so the
 * worker checks the privilege (Sys.Audit on /, as PVE's cluster status) on
 * its cached config and asks the manager, which checks it again.
 */
import type { FastifyInstance } from 'fastify';
import { AuthenticationError } from '../../errors.js';
import type { Identity } from '../../http/authenticate.js';
import { authorizationOf } from '../../http/authorization.js';
import { requirePrivileges } from '../../service/rules.js';
import { relayedError } from '../rpc.js';
import type { RouteContext } from './operation.js';

/** The manager's socket op that answers the view (a read: no audit record, no mutation log). */
export const CLUSTER_VIEW_OP = 'cluster.view';
export const CLUSTER_VIEW_PRIVILEGE = { path: '/', privs: ['Sys.Audit'] } as const;

// summary and operationId are for the API's description (../openapi.ts); fastify ignores them.
const description = {
  querystring: { type: 'object', properties: {} },
  summary: "the cluster: hosts, acked revision, lease left, this host's fence (Sys.Audit on /)",
  operationId: CLUSTER_VIEW_OP,
};

export function registerClusterRoutes(api: FastifyInstance, ctx: RouteContext): void {
  api.route({
    method: 'GET',
    url: '/cluster/token-shadow',
    onRequest: [ctx.authenticate],
    schema: description,
    handler: async (request) => {
      const caller = request.identity as Identity;
      const config = ctx.users.current() ?? (await ctx.users.get());
      requirePrivileges(config, caller, CLUSTER_VIEW_PRIVILEGE.path, CLUSTER_VIEW_PRIVILEGE.privs);
      const credential = authorizationOf(request.raw);
      if (typeof credential !== 'string') throw new AuthenticationError('missing-header');
      const response = await ctx.rpc.call(CLUSTER_VIEW_OP, credential, {}, request.ip);
      if (!response.ok) throw relayedError(response);
      return { data: response.data };
    },
  });
}
