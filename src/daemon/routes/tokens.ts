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

/** The fields the answers add to PVE's (withLastUsed), each absent when not known. */
const LAST_USED_PROPERTIES = {
  'last-used': {
    type: 'integer',
    description: 'Epoch second of the last use; absent for never (not a PVE field)',
  },
  'last-used-source': {
    type: 'string',
    description:
      "The client's address of the last use: the peer, or the client a trusted proxy names " +
      '(not a PVE field)',
  },
  'last-used-host': {
    type: 'string',
    description:
      'The host (multi-host mode) whose daemons took the last use; absent with one host ' +
      '(not a PVE field)',
  },
} as const;

const flag = { type: 'integer', enum: [0, 1] } as const;

/** A token's fields as the reads answer them. */
const TOKEN_INFO_PROPERTIES = {
  enable: flag,
  expire: { type: 'integer', description: 'Epoch second; 0 for never' },
  privsep: flag,
  comment: { type: 'string' },
  'allowed-ips': {
    type: 'string',
    description:
      'Addresses and CIDRs the token is accepted from, comma-separated (not a PVE field)',
  },
  'grace-until': {
    type: 'integer',
    description: 'Epoch second until which the previous secret works (not a PVE field)',
  },
  ...LAST_USED_PROPERTIES,
} as const;

const TOKEN_INFO_SCHEMA = { type: 'object', properties: TOKEN_INFO_PROPERTIES } as const;

const TOKEN_LIST_SCHEMA = {
  type: 'array',
  items: {
    type: 'object',
    required: ['tokenid'],
    properties: { tokenid: { type: 'string' }, ...TOKEN_INFO_PROPERTIES },
  },
} as const;

export function registerTokenRoutes(api: FastifyInstance, ctx: RouteContext): void {
  const lastUsed = async () => (await ctx.lastUsed?.()) ?? (() => undefined);
  operationRoute(
    api,
    ctx,
    'GET',
    '/access/users/:userid/token',
    listTokens,
    async (rows, p) => {
      const lookup = await lastUsed();
      return rows.map((row) => withLastUsed(row, lookup(joinTokenid(p.userid, row.tokenid))));
    },
    TOKEN_LIST_SCHEMA,
  );
  operationRoute(
    api,
    ctx,
    'GET',
    TOKEN,
    readToken,
    async (info, p) => withLastUsed(info, (await lastUsed())(joinTokenid(p.userid, p.tokenName))),
    TOKEN_INFO_SCHEMA,
  );
  operationRoute(api, ctx, 'POST', TOKEN, createToken);
  operationRoute(api, ctx, 'PUT', TOKEN, updateToken);
  operationRoute(api, ctx, 'DELETE', TOKEN, deleteToken);
  // Bulk revocation (not a PVE endpoint): users and/or a comment glob, one change.
  operationRoute(api, ctx, 'POST', '/access/tokens/revoke', revokeTokens);
}
