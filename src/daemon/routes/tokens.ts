/**
 * /access/users/{userid}/token: a user's API tokens. A PUT with
 * `regenerate=1` gives the token a new secret, as Proxmox Backup Server does.
 * POST /access/tokens/revoke revokes every token matching a filter at once.
 */
import type { FastifyInstance } from 'fastify';
import { joinTokenid } from '../../ids.js';
import { withLastUsed } from '../../service/answers.js';
import {
  createToken,
  deleteToken,
  listTokens,
  readToken,
  revokeTokens,
  updateToken,
} from '../../service/operations.js';
import { operationRoute, type RouteContext } from './operation.js';

const TOKEN = '/access/users/:userid/token/:tokenid';

export function registerTokenRoutes(api: FastifyInstance, ctx: RouteContext): void {
  const lastUsed = async () => (await ctx.lastUsed?.()) ?? (() => undefined);
  operationRoute(api, ctx, 'GET', '/access/users/:userid/token', listTokens, async (rows, p) => {
    const lookup = await lastUsed();
    return rows.map((row) => withLastUsed(row, lookup(joinTokenid(p.userid, row.tokenid))));
  });
  operationRoute(api, ctx, 'GET', TOKEN, readToken, async (info, p) =>
    withLastUsed(info, (await lastUsed())(joinTokenid(p.userid, p.tokenName))),
  );
  operationRoute(api, ctx, 'POST', TOKEN, createToken);
  operationRoute(api, ctx, 'PUT', TOKEN, updateToken);
  operationRoute(api, ctx, 'DELETE', TOKEN, deleteToken);
  // Bulk revocation (not a PVE endpoint): users and/or a comment glob, one change.
  operationRoute(api, ctx, 'POST', '/access/tokens/revoke', revokeTokens);
}
