/** /pools: the resource pools, as PVE 9.1's (the nested-pool form: poolid as a parameter). */
import type { FastifyInstance } from 'fastify';
import { createPool, deletePool, listPools, updatePool } from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerPoolRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/pools', listPools);
  operationRoute(api, ctx, 'POST', '/pools', createPool);
  operationRoute(api, ctx, 'PUT', '/pools', updatePool);
  operationRoute(api, ctx, 'DELETE', '/pools', deletePool);
}
