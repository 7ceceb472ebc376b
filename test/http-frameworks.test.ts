/**
 * The fastify plugin and the connect/Express middleware against real servers
 * on loopback, with real stores: the identity reaches the handler, every
 * authentication failure is a bare 401, a full hashing queue is a 503, and
 * the options (schemes) are honoured.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import express from 'express';
import Fastify from 'fastify';
import { tokenAuth } from '../src/fastify.js';
import {
  addToken,
  addUser,
  GenerationPage,
  HashPool,
  type Identity,
  TokenShadow,
  tokenAuthMiddleware,
  UserConfigStore,
} from '../src/index.js';
import { FAST_ARGON2 } from './helpers/shadow.js';
import { tempDir } from './helpers/tmp.js';

/** Hashing slow enough that one task certainly still runs while a request arrives. */
const SLOW_ARGON2 = { memoryCost: 64 * 1024, timeCost: 40 };

async function deployment() {
  const dir = tempDir();
  const page = GenerationPage.open(path.join(dir, 'config-versions'));
  const files = { users: path.join(dir, 'user.cfg'), shadow: path.join(dir, 'token.shadow') };
  // The server's pool: one thread, no queue, slow new hashes (a blocker below);
  // verifies of the stored, fast hashes are quick.
  const pool = new HashPool({ threads: 1, maxQueue: 0, argon2: SLOW_ARGON2 });
  const users = new UserConfigStore({ path: files.users, page });
  const shadow = new TokenShadow({ path: files.shadow, page, pool });
  const adminPool = new HashPool({ threads: 1, argon2: FAST_ARGON2 });
  const admin = new TokenShadow({ path: files.shadow, page, pool: adminPool });
  await users.mutate((config) => {
    addUser(config, 'joe@pve', {});
    addToken(config, 'joe@pve!ci', {});
  });
  const secret = await admin.generateAndSetSecret('joe@pve!ci');
  after(async () => {
    await pool.close();
    await adminPool.close();
    page.close();
  });
  return { users, shadow, pool, secret };
}

interface Answer {
  status: number;
  body: unknown;
}

async function get(url: string, authorization?: string): Promise<Answer> {
  const response = await fetch(url, authorization ? { headers: { authorization } } : {});
  const text = await response.text();
  return { status: response.status, body: text === '' ? null : JSON.parse(text) };
}

const JOE: Identity = { authid: 'joe@pve!ci', userid: 'joe@pve', tokenName: 'ci' };

/** What both faces must do, given the URL of a guarded `/me` that echoes the identity. */
async function behavesLikeTheDaemon(
  url: string,
  d: Awaited<ReturnType<typeof deployment>>,
): Promise<void> {
  const pve = `PVEAPIToken=joe@pve!ci=${d.secret}`;
  assert.deepEqual(await get(url, pve), { status: 200, body: JOE });
  assert.deepEqual(await get(url, pve), { status: 200, body: JOE }, 'again, from the cache');
  for (const bad of [undefined, 'Bearer x', `PVEAPIToken=joe@pve!ci=${d.secret}x`]) {
    assert.deepEqual(await get(url, bad), { status: 401, body: { data: null } }, String(bad));
  }
  assert.deepEqual(
    await get(url, `PBSAPIToken joe@pve!ci:${d.secret}`),
    { status: 401, body: { data: null } },
    'a scheme left out of the options',
  );
  // One slow hash holds the only thread; an uncached verify finds the queue full.
  const blocker = d.pool.hash('occupy the pool');
  const busy = await get(url, `PVEAPIToken=joe@pve!ci=${'0'.repeat(36)}`);
  await blocker;
  assert.equal(busy.status, 503);
  assert.match(String((busy.body as { message?: string }).message), /hashing queue is full/);
}

describe('framework faces', () => {
  it('fastify: the plugin guards a route and puts the identity on the request', async () => {
    const d = await deployment();
    const app = Fastify();
    await app.register(tokenAuth, { users: d.users, shadow: d.shadow, schemes: ['PVEAPIToken'] });
    app.get('/me', { onRequest: [app.authenticateToken] }, async (request) => request.identity);
    app.get('/public', async (request) => ({ identity: request.identity }));
    await app.listen({ host: '127.0.0.1', port: 0 });
    after(() => app.close());
    const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    await behavesLikeTheDaemon(`${base}/me`, d);
    assert.deepEqual(await get(`${base}/public`), { status: 200, body: { identity: null } });
  });

  it('fastify: { global: true } guards every route of the instance', async () => {
    const d = await deployment();
    const app = Fastify();
    await app.register(tokenAuth, { users: d.users, shadow: d.shadow, global: true });
    app.get('/any', async (request) => request.identity);
    await app.listen({ host: '127.0.0.1', port: 0 });
    after(() => app.close());
    const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/any`;
    assert.deepEqual(await get(url), { status: 401, body: { data: null } });
    assert.deepEqual(await get(url, `PBSAPIToken joe@pve!ci:${d.secret}`), {
      status: 200,
      body: JOE,
    });
  });

  it('express: the middleware sets req.identity or answers 401/503', async () => {
    const d = await deployment();
    const app = express();
    app.use(
      '/me',
      tokenAuthMiddleware({ users: d.users, shadow: d.shadow, schemes: ['PVEAPIToken'] }),
    );
    app.get('/me', (req, res) => {
      res.json(req.identity);
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    after(() => new Promise((resolve) => server.close(resolve)));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    await behavesLikeTheDaemon(`${base}/me`, d);
  });
});
