/**
 * /access/users/{userid}/token: a user's API tokens. A PUT with
 * `regenerate=1` gives the token a new secret, as Proxmox Backup Server does.
 */
import type { FastifyInstance } from 'fastify';
import {
  createToken,
  deleteToken,
  listTokens,
  readToken,
  updateToken,
} from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

const TOKEN = '/access/users/:userid/token/:tokenid';

export function registerTokenRoutes(api: FastifyInstance, ctx: RouteContext): void {
  operationRoute(api, ctx, 'GET', '/access/users/:userid/token', listTokens);
  operationRoute(api, ctx, 'GET', TOKEN, readToken);
  operationRoute(api, ctx, 'POST', TOKEN, createToken);
  operationRoute(api, ctx, 'PUT', TOKEN, updateToken);
  operationRoute(api, ctx, 'DELETE', TOKEN, deleteToken);
}
