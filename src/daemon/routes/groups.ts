/** /access/groups: the groups. */
import type { FastifyInstance } from 'fastify';
import { createGroup, deleteGroup, listGroups, updateGroup } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerGroupRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/groups', listGroups);
  operationRoute(api, ctx, 'POST', '/access/groups', createGroup);
  operationRoute(api, ctx, 'PUT', '/access/groups/:groupid', updateGroup);
  operationRoute(api, ctx, 'DELETE', '/access/groups/:groupid', deleteGroup);
}
