/**
 * One API route per operation of the table: its fastify schemas are cut from
 * the operation's parameters (the names in the URL become the path schema,
 * the rest the query of a GET or DELETE, or the body of a POST or PUT), its
 * privilege rule is checked on the worker's cached config, and then a read
 * is answered here while a write is forwarded to the manager with the
 * caller's credential: the manager authenticates it again and checks the rule
 * again on the fresh config.
 */
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { UserConfigStore } from '../../access/user-info.js';
import type { UserConfig } from '../../config/types.js';
import { AuthenticationError } from '../../errors.js';
import type { Identity } from '../../http/authenticate.js';
import { authorizationOf } from '../../http/authorization.js';
import type { AuthenticationHook } from '../../http/request-hook.js';
import type { LastUsedLookup } from '../../service/answers.js';
import type { Operation } from '../../service/operations.js';
import type { ParameterSchema, Raw } from '../../service/params.js';
import { type RpcClient, relayedError } from '../rpc.js';

export type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';

/** What every route needs from the worker. */
export interface RouteContext {
  users: UserConfigStore;
  rpc: RpcClient;
  /** The onRequest hook that authenticates and sets `request.identity`. */
  authenticate: AuthenticationHook;
  /** Where a request comes from, as the authenticator decided it (allowed-ips, the audit trail). */
  clientAddress: (request: IncomingMessage) => string | undefined;
  /** Last use per token, for `last-used` in the token answers. */
  lastUsed?: () => Promise<LastUsedLookup>;
}

function pick(schema: ParameterSchema, names: readonly string[], keep: boolean) {
  const properties = Object.fromEntries(
    Object.entries(schema.properties).filter(([name]) => names.includes(name) === keep),
  );
  const required = (schema.required ?? []).filter((name) => names.includes(name) === keep);
  return { type: 'object', properties, ...(required.length > 0 ? { required } : {}) } as const;
}

/** Fastify's schemas for `url`, from the operation's flat parameters. */
function schemasOf(method: Method, url: string, parameters: ParameterSchema) {
  const pathNames = [...url.matchAll(/:(\w+)/g)].map((match) => match[1] as string);
  const rest = pick(parameters, pathNames, false);
  const hasRest = Object.keys(rest.properties).length > 0;
  return {
    ...(pathNames.length > 0 ? { params: pick(parameters, pathNames, true) } : {}),
    ...(hasRest
      ? { [method === 'GET' || method === 'DELETE' ? 'querystring' : 'body']: rest }
      : {}),
  };
}

function config(ctx: RouteContext): UserConfig | Promise<UserConfig> {
  return ctx.users.current() ?? ctx.users.get();
}

/** Forwards a checked write to the manager; its refusal is relayed as it came (ApiError). */
async function forward(ctx: RouteContext, name: string, request: FastifyRequest, params: unknown) {
  // The manager authenticates the caller itself, from the same credential.
  const credential = authorizationOf(request.raw);
  if (typeof credential !== 'string') throw new AuthenticationError('missing-header');
  // The client as allowed-ips saw it: the manager checks the token's list against it again.
  const source = ctx.clientAddress(request.raw) ?? request.ip;
  const response = await ctx.rpc.call(name, credential, params as Raw, source);
  if (!response.ok) throw relayedError(response);
  return response.data;
}

/** The API parameters of a request: its path parameters with its query or body. */
function inputOf(method: Method, request: FastifyRequest): Raw {
  const rest = method === 'GET' || method === 'DELETE' ? request.query : request.body;
  return { ...((rest ?? {}) as Raw), ...(request.params as Raw) };
}

/**
 * Serves `operation` at `method url`, answering PVE's `{"data": ...}`; `answer`
 * may add to a read's, and `dataSchema` describes `data` in the API's description.
 */
export function operationRoute<P, R = unknown>(
  api: FastifyInstance,
  ctx: RouteContext,
  method: Method,
  url: string,
  operation: Operation<P, R>,
  answer?: (data: R, params: P) => Promise<unknown>,
  dataSchema?: object,
): void {
  api.route({
    method,
    url,
    onRequest: [ctx.authenticate],
    // summary, operationId and dataSchema are for the API's description (../openapi.ts);
    // fastify ignores them (a `response` schema would make it drop fields it does not name).
    schema: {
      ...schemasOf(method, url, operation.parameters),
      summary: operation.summary,
      operationId: operation.name,
      ...(dataSchema ? { dataSchema } : {}),
    },
    handler: async (request) => {
      const caller = request.identity as Identity;
      const params = operation.fromApi(inputOf(method, request));
      const current = await config(ctx);
      operation.authorize(caller, params, current);
      if (operation.access === 'read') {
        const data = operation.run(current, caller, params);
        return { data: answer ? await answer(data, params) : data };
      }
      return { data: await forward(ctx, operation.name, request, params) };
    },
  });
}
