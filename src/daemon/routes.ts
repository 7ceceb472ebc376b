/**
 * The API routes under /api2/json, following Proxmox VE's conventions: a
 * `{"data": ...}` envelope, form-urlencoded or JSON bodies, 401 for failed
 * authentication, 403 for a missing privilege, 400 with per-parameter errors,
 * 503 when the hashing queue is full. Reads are answered here from the
 * worker's cached config; mutations are checked here and again by the manager.
 */
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import type { UserConfigStore } from '../access/user-info.js';
import { ApiError, AuthenticationError, BusyError, TokenShadowError } from '../errors.js';
import type { Authenticator, Identity } from '../http/authenticate.js';
import {
  ACCESS_GROUPS,
  listGroups,
  listTokens,
  listUsers,
  readAcl,
  readPermissions,
  readToken,
  readUser,
  requirePrivileges,
  toApiError,
} from '../service/operations.js';
import type { RpcClient } from './rpc.js';

export const VERSION = { version: '0.1.0', release: '0.1', repoid: 'token-shadow' };

export interface RouteContext {
  auth: Authenticator;
  users: UserConfigStore;
  rpc: RpcClient;
  /** GET /version without authentication (benchmark baseline). */
  publicVersion?: boolean;
  /** Called with the seconds each authentication took (metrics). */
  onAuthenticated?: (seconds: number) => void;
}

declare module 'fastify' {
  interface FastifyRequest {
    identity: Identity | null;
  }
}

const bool = { type: 'integer', enum: [0, 1] } as const;
const text = { type: 'string', maxLength: 4096 } as const;
const userid = { type: 'string', minLength: 3, maxLength: 64 } as const;
const tokenName = {
  type: 'string',
  pattern: '^[A-Za-z0-9_][A-Za-z0-9._-]*$',
  maxLength: 64,
} as const;
const expire = { type: 'integer', minimum: 0 } as const;
const list = { type: 'string', maxLength: 65536 } as const;

function split(value: unknown): string[] | undefined {
  if (typeof value !== 'string') return undefined;
  return value
    .split(/[,;\s]+/)
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function flagOf(value: unknown): boolean | undefined {
  return value === undefined ? undefined : value === 1 || value === '1' || value === true;
}

type Params = Record<string, unknown>;

function defined<T extends Record<string, unknown>>(object: T): Partial<T> {
  return Object.fromEntries(
    Object.entries(object).filter(([, v]) => v !== undefined),
  ) as Partial<T>;
}

/** Maps a fastify schema failure to PVE's per-parameter error object. */
function parameterErrors(error: FastifyError): Record<string, string> {
  const errors: Record<string, string> = {};
  for (const v of error.validation ?? []) {
    const missing = (v.params as { missingProperty?: string }).missingProperty;
    const name = missing ?? v.instancePath.replace(/^\//, '').split('/')[0] ?? 'parameter';
    errors[name || 'parameter'] = missing
      ? 'property is missing and it is not optional'
      : (v.message ?? 'invalid');
  }
  return errors;
}

export function registerRoutes(app: FastifyInstance, ctx: RouteContext): void {
  app.decorateRequest('identity', null);
  // PVE clients POST without a body when every parameter is optional.
  app.addHook('preValidation', async (request) => {
    if (request.body === undefined || request.body === null) request.body = {};
  });

  app.setErrorHandler((error: FastifyError, request, reply) => {
    if (error.validation) {
      return reply.code(400).send({ data: null, errors: parameterErrors(error) });
    }
    const mapped = toApiError(error);
    if (mapped instanceof AuthenticationError) {
      request.log.info({ reason: mapped.reason }, 'authentication failed');
      return reply.code(401).send({ data: null });
    }
    if (mapped instanceof BusyError)
      return reply.code(503).send({ data: null, message: mapped.message });
    if (mapped instanceof ApiError) {
      return reply.code(mapped.status).send({
        data: null,
        message: mapped.message,
        ...(mapped.errors ? { errors: mapped.errors } : {}),
      });
    }
    if (error.statusCode && error.statusCode < 500) {
      return reply.code(error.statusCode).send({ data: null, message: error.message });
    }
    request.log.error(
      { err: mapped instanceof TokenShadowError ? mapped.code : String(error) },
      'request failed',
    );
    return reply.code(500).send({ data: null, message: 'internal error' });
  });

  const authenticate = async (request: FastifyRequest) => {
    const start = process.hrtime.bigint();
    request.identity = await ctx.auth.authenticate(request.headers);
    ctx.onAuthenticated?.(Number(process.hrtime.bigint() - start) / 1e9);
  };
  const who = (request: FastifyRequest): string => (request.identity as Identity).authid;
  const config = () => ctx.users.current() ?? ctx.users.get();

  /** Forwards a checked mutation to the manager and unwraps its answer. */
  const forward = async (request: FastifyRequest, op: string, params: Params) => {
    let response: Awaited<ReturnType<RpcClient['call']>>;
    try {
      response = await ctx.rpc.call(op, who(request), params);
    } catch {
      throw new ApiError(503, 'manager unavailable');
    }
    if (!response.ok) throw new ApiError(response.status, response.message, response.errors);
    return { data: response.data };
  };

  app.register(
    async (api) => {
      api.get('/version', { onRequest: ctx.publicVersion ? [] : [authenticate] }, async () => ({
        data: VERSION,
      }));

      api.get(
        '/access/permissions',
        {
          onRequest: [authenticate],
          schema: { querystring: { type: 'object', properties: { path: text, userid: text } } },
        },
        async (request) => {
          const q = request.query as { path?: string; userid?: string };
          return { data: readPermissions(await config(), who(request), defined(q)) };
        },
      );

      api.get(
        '/access/users',
        {
          onRequest: [authenticate],
          schema: { querystring: { type: 'object', properties: { enabled: bool, full: bool } } },
        },
        async (request) => {
          const q = request.query as { enabled?: number; full?: number };
          const options = defined({ enabled: flagOf(q.enabled), full: flagOf(q.full) });
          return { data: listUsers(await config(), who(request), options) };
        },
      );

      const userFields = {
        enable: bool,
        expire,
        firstname: text,
        lastname: text,
        email: text,
        comment: text,
        keys: text,
        groups: list,
      };
      api.post(
        '/access/users',
        {
          onRequest: [authenticate],
          schema: {
            body: {
              type: 'object',
              required: ['userid'],
              properties: { userid, password: text, ...userFields },
            },
          },
        },
        async (request) => {
          const b = request.body as Params;
          requirePrivileges(await config(), who(request), ACCESS_GROUPS, ['User.Modify']);
          return forward(request, 'user.create', { userid: b.userid, fields: userFieldsOf(b) });
        },
      );

      const userParams = {
        type: 'object',
        required: ['userid'],
        properties: { userid },
      } as const;
      api.get(
        '/access/users/:userid',
        { onRequest: [authenticate], schema: { params: userParams } },
        async (request) => {
          const { userid: id } = request.params as { userid: string };
          return { data: readUser(await config(), who(request), id) };
        },
      );
      api.put(
        '/access/users/:userid',
        {
          onRequest: [authenticate],
          schema: {
            params: userParams,
            body: { type: 'object', properties: { ...userFields, append: bool } },
          },
        },
        async (request) => {
          const { userid: id } = request.params as { userid: string };
          const b = (request.body ?? {}) as Params;
          requirePrivileges(await config(), who(request), ACCESS_GROUPS, ['User.Modify']);
          const changes = { ...userFieldsOf(b), ...defined({ append: flagOf(b.append) }) };
          return forward(request, 'user.update', { userid: id, changes });
        },
      );
      api.delete(
        '/access/users/:userid',
        { onRequest: [authenticate], schema: { params: userParams } },
        async (request) => {
          const { userid: id } = request.params as { userid: string };
          requirePrivileges(await config(), who(request), ACCESS_GROUPS, ['User.Modify']);
          return forward(request, 'user.delete', { userid: id });
        },
      );

      api.get(
        '/access/users/:userid/token',
        { onRequest: [authenticate], schema: { params: userParams } },
        async (request) => {
          const { userid: id } = request.params as { userid: string };
          return { data: listTokens(await config(), who(request), id) };
        },
      );

      const tokenParams = {
        type: 'object',
        required: ['userid', 'tokenid'],
        properties: { userid, tokenid: tokenName },
      } as const;
      const tokenFields = { expire, privsep: bool, comment: text, enable: bool };
      const selfOrUserModify = async (request: FastifyRequest, id: string) => {
        if (who(request) !== id) {
          requirePrivileges(await config(), who(request), ACCESS_GROUPS, ['User.Modify']);
        }
      };
      api.get(
        '/access/users/:userid/token/:tokenid',
        { onRequest: [authenticate], schema: { params: tokenParams } },
        async (request) => {
          const p = request.params as { userid: string; tokenid: string };
          return { data: readToken(await config(), who(request), p.userid, p.tokenid) };
        },
      );
      api.post(
        '/access/users/:userid/token/:tokenid',
        {
          onRequest: [authenticate],
          schema: { params: tokenParams, body: { type: 'object', properties: tokenFields } },
        },
        async (request) => {
          const p = request.params as { userid: string; tokenid: string };
          await selfOrUserModify(request, p.userid);
          return forward(request, 'token.create', {
            userid: p.userid,
            tokenName: p.tokenid,
            fields: tokenFieldsOf((request.body ?? {}) as Params),
          });
        },
      );
      api.put(
        '/access/users/:userid/token/:tokenid',
        {
          onRequest: [authenticate],
          schema: { params: tokenParams, body: { type: 'object', properties: tokenFields } },
        },
        async (request) => {
          const p = request.params as { userid: string; tokenid: string };
          await selfOrUserModify(request, p.userid);
          return forward(request, 'token.update', {
            userid: p.userid,
            tokenName: p.tokenid,
            changes: tokenFieldsOf((request.body ?? {}) as Params),
          });
        },
      );
      api.delete(
        '/access/users/:userid/token/:tokenid',
        { onRequest: [authenticate], schema: { params: tokenParams } },
        async (request) => {
          const p = request.params as { userid: string; tokenid: string };
          await selfOrUserModify(request, p.userid);
          return forward(request, 'token.delete', { userid: p.userid, tokenName: p.tokenid });
        },
      );

      api.get('/access/acl', { onRequest: [authenticate] }, async (request) => ({
        data: readAcl(await config(), who(request)),
      }));
      api.put(
        '/access/acl',
        {
          onRequest: [authenticate],
          schema: {
            body: {
              type: 'object',
              required: ['path', 'roles'],
              properties: {
                path: text,
                roles: list,
                users: list,
                groups: list,
                tokens: list,
                propagate: bool,
                delete: bool,
              },
            },
          },
        },
        async (request) => {
          const b = request.body as Params;
          const path = b.path as string;
          requirePrivileges(await config(), who(request), path, ['Permissions.Modify']);
          return forward(request, 'acl.update', {
            path,
            roles: split(b.roles) ?? [],
            ...defined({
              users: split(b.users),
              groups: split(b.groups),
              tokens: split(b.tokens),
              propagate: flagOf(b.propagate),
              delete: flagOf(b.delete),
            }),
          });
        },
      );

      api.get('/access/groups', { onRequest: [authenticate] }, async (request) => ({
        data: listGroups(await config(), who(request)),
      }));
      api.post(
        '/access/groups',
        {
          onRequest: [authenticate],
          schema: {
            body: {
              type: 'object',
              required: ['groupid'],
              properties: {
                groupid: { type: 'string', pattern: '^[A-Za-z0-9._-]+$' },
                comment: text,
              },
            },
          },
        },
        async (request) => {
          const b = request.body as Params;
          requirePrivileges(await config(), who(request), ACCESS_GROUPS, ['Group.Allocate']);
          return forward(
            request,
            'group.create',
            defined({ groupid: b.groupid, comment: b.comment }),
          );
        },
      );
    },
    { prefix: '/api2/json' },
  );
}

function userFieldsOf(b: Params) {
  return defined({
    enable: flagOf(b.enable),
    expire: b.expire as number | undefined,
    firstname: b.firstname as string | undefined,
    lastname: b.lastname as string | undefined,
    email: b.email as string | undefined,
    comment: b.comment as string | undefined,
    keys: b.keys as string | undefined,
    groups: split(b.groups),
  });
}

function tokenFieldsOf(b: Params) {
  return defined({
    enable: flagOf(b.enable),
    expire: b.expire as number | undefined,
    privsep: flagOf(b.privsep),
    comment: b.comment as string | undefined,
  });
}
