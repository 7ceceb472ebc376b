/**
 * The API's OpenAPI description: served by the real daemon at
 * /api2/openapi.json without authentication, made from the routes' own
 * schemas, and equal to the checked-in docs/openapi.json. After a change to
 * the routes: TOKEN_SHADOW_WRITE_OPENAPI=1 node --test dist/test/openapi.test.js
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Api, call, type Deployment, startDeployment } from '../harness/daemons.js';
import { LEAK_REPORT_OP } from '../src/daemon/leak-intake.js';
import { CLUSTER_VIEW_OP } from '../src/daemon/routes/cluster.js';
import { OPERATIONS } from '../src/service/operations.js';
import { tempDir } from './helpers/tmp.js';

const CHECKED_IN = fileURLToPath(new URL('../../docs/openapi.json', import.meta.url));

interface Described {
  openapi: string;
  paths: Record<
    string,
    Record<
      string,
      {
        operationId?: string;
        security?: unknown[];
        requestBody?: {
          content: Record<string, { schema: { properties: Record<string, unknown> } }>;
        };
      }
    >
  >;
}

describe('the OpenAPI description', () => {
  let deployment: Deployment;
  let api: Api;
  let served: Described;
  let raw: string;
  before(async () => {
    deployment = await startDeployment(tempDir());
    api = await deployment.startApi('api', ['--workers', '1', '--hash-threads', '1']);
    const reply = await call(
      { url: api.url.replace(/\/json$/, ''), ca: api.ca },
      'GET',
      '/openapi.json',
    );
    assert.equal(reply.status, 200, 'served without authentication');
    raw = reply.raw;
    served = JSON.parse(raw) as Described;
  });
  after(() => deployment?.stop());

  it('describes every route of the table by its operation', () => {
    assert.equal(served.openapi, '3.1.0');
    // Every path but /version (PVE's, answered by the daemon itself), the cluster view
    // (answered by the manager from etcd) and the leak reports (taken by the manager's intake,
    // which runs token.revoke-leaked after) is an operation's.
    assert.equal(served.paths['/cluster/token-shadow']?.get?.operationId, CLUSTER_VIEW_OP);
    const leaks = served.paths['/access/leaked-secrets']?.post;
    assert.equal(leaks?.operationId, LEAK_REPORT_OP);
    assert.deepEqual(leaks?.security, [], 'reported without authentication');
    const special = ['/version', '/cluster/token-shadow', '/access/leaked-secrets'];
    const described = Object.entries(served.paths)
      .filter(([path]) => !special.includes(path))
      .flatMap(([, item]) => Object.values(item).map((op) => op.operationId));
    for (const id of described) assert.ok(id && OPERATIONS.has(id), `unknown operation ${id}`);
    assert.ok(described.length >= 24, `${described.length} routes`);
    const update = served.paths['/access/users/{userid}/token/{tokenid}']?.put;
    assert.equal(update?.operationId, 'token.update');
    const form = update?.requestBody?.content['application/x-www-form-urlencoded'];
    assert.ok(form?.schema.properties.regenerate, 'the body schema is the route’s own');
    assert.deepEqual(served.paths['/version']?.get?.security, undefined, '/version needs a token');
  });

  it('is the checked-in docs/openapi.json', () => {
    const text = `${JSON.stringify(served, null, 2)}\n`;
    if (process.env.TOKEN_SHADOW_WRITE_OPENAPI) writeFileSync(CHECKED_IN, text);
    assert.deepEqual(
      JSON.parse(readFileSync(CHECKED_IN, 'utf8')),
      served,
      'docs/openapi.json is behind the routes: TOKEN_SHADOW_WRITE_OPENAPI=1 node --test dist/test/openapi.test.js',
    );
  });
});
