/** /access/roles: built-in and custom roles. */
import type { FastifyInstance } from 'fastify';
import { createRole, deleteRole, listRoles, updateRole } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerRoleRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/roles', listRoles);
  operationRoute(api, ctx, 'POST', '/access/roles', createRole);
  operationRoute(api, ctx, 'PUT', '/access/roles/:roleid', updateRole);
  operationRoute(api, ctx, 'DELETE', '/access/roles/:roleid', deleteRole);
}
