/**
 * The API's OpenAPI 3.1 description, made from the routes themselves: every
 * route registered under /api2/json is seen by fastify's onRoute hook with
 * the schemas operationRoute cut from its operation's parameters (and the
 * operation's name and summary), so the description cannot drift from what
 * the daemon validates. Served at GET /api2/openapi.json; docs/openapi.json
 * is the same document, kept equal by a test against the running daemon.
 */
import type { FastifyInstance, RouteOptions } from 'fastify';

interface ObjectSchema {
  properties?: Record<string, unknown>;
  required?: readonly string[];
}

/** What the description needs of one route. */
export interface DescribedRoute {
  method: string;
  url: string;
  operationId?: string;
  summary?: string;
  params?: ObjectSchema;
  querystring?: ObjectSchema;
  body?: ObjectSchema;
  /** The schema of the answer's `data`, where the route gives one. */
  data?: object;
  authenticated: boolean;
  /** The status of a success when not 200 (a route's own `response` schema says so). */
  success?: string;
}

/** Where the description is served (outside /api2/json: it is no PVE API path). */
export const OPENAPI_PATH = '/api2/openapi.json';

/**
 * Starts recording the routes registered on `app` from now on under `prefix`;
 * the array fills as they are registered (complete once the app is ready).
 */
export function recordRoutes(app: FastifyInstance, prefix: string): DescribedRoute[] {
  const routes: DescribedRoute[] = [];
  app.addHook('onRoute', (route: RouteOptions) => {
    if (!route.url.startsWith(prefix)) return;
    const schema = (route.schema ?? {}) as Record<string, unknown>;
    for (const method of [route.method].flat()) {
      if (method === 'HEAD') continue;
      routes.push({
        method,
        url: route.url,
        ...(typeof schema.operationId === 'string' ? { operationId: schema.operationId } : {}),
        ...(typeof schema.summary === 'string' ? { summary: schema.summary } : {}),
        ...(schema.params ? { params: schema.params as ObjectSchema } : {}),
        ...(schema.querystring ? { querystring: schema.querystring as ObjectSchema } : {}),
        ...(schema.body ? { body: schema.body as ObjectSchema } : {}),
        ...(schema.dataSchema ? { data: schema.dataSchema as object } : {}),
        authenticated: [route.onRequest ?? []].flat().length > 0,
        ...successOf(schema.response),
      });
    }
  });
  return routes;
}

/** A route's success status other than 200, from the statuses its response schema names. */
function successOf(response: unknown): { success?: string } {
  const success = Object.keys(response ?? {}).find((status) => /^2\d\d$/.test(status));
  return success === undefined || success === '200' ? {} : { success };
}

function parameters(where: 'path' | 'query', schema: ObjectSchema | undefined) {
  return Object.entries(schema?.properties ?? {}).map(([name, property]) => ({
    name,
    in: where,
    required: where === 'path' || (schema?.required ?? []).includes(name),
    schema: property,
  }));
}

const ERROR_RESPONSES = {
  '400': { description: 'Invalid parameters: `errors` names each one' },
  '413': { description: 'The request body is larger than the route takes' },
  '429': {
    description:
      'Too many failures from this source (or reports, for a route without authentication): retry after `Retry-After`',
  },
  '503': { description: 'Busy (hashing queue full) or this host is fenced; retry' },
};

/** What only a route that authenticates answers. */
const AUTHENTICATED_RESPONSES = {
  '401': { description: 'Authentication failed (a bare answer, whatever the reason)' },
  '403': { description: 'The caller lacks a privilege the operation needs' },
};

/** The OpenAPI 3.1 document of `routes`. */
export function openApiDocument(routes: readonly DescribedRoute[], version: string): object {
  const paths: Record<string, Record<string, unknown>> = {};
  const sorted = [...routes].sort((a, b) => a.url.localeCompare(b.url));
  for (const route of sorted) {
    const path = route.url.replace(/:(\w+)/g, '{$1}');
    const body = route.body
      ? {
          requestBody: {
            required: (route.body.required ?? []).length > 0,
            content: {
              'application/x-www-form-urlencoded': { schema: { type: 'object', ...route.body } },
              'application/json': { schema: { type: 'object', ...route.body } },
            },
          },
        }
      : {};
    paths[path] ??= {};
    (paths[path] as Record<string, unknown>)[route.method.toLowerCase()] = {
      ...(route.operationId ? { operationId: route.operationId } : {}),
      ...(route.summary ? { summary: route.summary } : {}),
      parameters: [...parameters('path', route.params), ...parameters('query', route.querystring)],
      ...body,
      ...(route.authenticated ? {} : { security: [] }),
      responses: {
        [route.success ?? '200']: {
          description: "Proxmox VE's envelope: the answer in `data`",
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['data'],
                properties: { data: route.data ?? {} },
              },
            },
          },
        },
        ...ERROR_RESPONSES,
        ...(route.authenticated ? AUTHENTICATED_RESPONSES : {}),
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'token-shadow API',
      version,
      description:
        "Proxmox VE's /access API for users, API tokens, groups, roles, ACLs and pools, " +
        'authenticated by API token.',
    },
    servers: [{ url: '/api2/json' }],
    components: {
      securitySchemes: {
        PVEAPIToken: {
          type: 'apiKey',
          in: 'header',
          name: 'Authorization',
          description:
            'PVEAPIToken=USER@REALM!TOKENID=SECRET (or PBSAPIToken=USER@REALM!TOKENID:SECRET)',
        },
      },
    },
    security: [{ PVEAPIToken: [] }],
    paths: Object.fromEntries(
      Object.entries(paths).map(([path, item]) => [path.replace(/^\/api2\/json/, ''), item]),
    ),
  };
}
