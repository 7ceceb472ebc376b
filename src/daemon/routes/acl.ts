/** /access/acl: the access control list. */
import type { FastifyInstance } from 'fastify';
import { readAcl, updateAcl } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerAclRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/acl', readAcl);
  operationRoute(api, ctx, 'PUT', '/access/acl', updateAcl);
}
