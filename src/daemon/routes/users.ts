/** /access/users: the users. */
import type { FastifyInstance } from 'fastify';
import {
  createUser,
  deleteUser,
  listUsers,
  readUser,
  updateUser,
} from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

export function registerUserRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/users', listUsers);
  operationRoute(api, ctx, 'POST', '/access/users', createUser);
  operationRoute(api, ctx, 'GET', '/access/users/:userid', readUser);
  operationRoute(api, ctx, 'PUT', '/access/users/:userid', updateUser);
  operationRoute(api, ctx, 'DELETE', '/access/users/:userid', deleteUser);
}
