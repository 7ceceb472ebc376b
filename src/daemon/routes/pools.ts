/** /pools: the resource pools (read only). */
import type { FastifyInstance } from 'fastify';
import { listPools } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerPoolRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/pools', listPools);
}
