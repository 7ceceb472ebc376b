/** /access/permissions: what a user or token may do where. */
import type { FastifyInstance } from 'fastify';
import { readPermissions } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerPermissionRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/permissions', readPermissions);
}
