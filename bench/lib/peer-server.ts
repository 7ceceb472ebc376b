/**
 * One plain-HTTP fastify process serving GET /api2/json/version with the API
 * worker's fastify options, and one of three onRequest hooks on that route:
 *
 * - none: no authentication (the baseline);
 * - bearer: @fastify/bearer-auth, the peer: static keys compared in constant
 *   time, no hashing, no cross-process state;
 * - token-shadow: the worker's own hook (src/http/request-hook.ts) with an
 *   Authenticator and per-source penalties on the deployment in argv;
 * - token-shadow-async: the hook as the worker had it before (an async hook
 *   awaiting Authenticator.authenticate, two hrtime reads and a prom-client
 *   histogram per request), kept to show what the new one saves.
 *
 * Everything else is the same process, so the difference between the three is
 * what the hook costs. Spoken to as a Channel (bench/lib/children.ts): argv[2]
 * is a JSON PeerServerSpec; prints {"port": n} when listening, exits at EOF.
 */
import bearerAuth from '@fastify/bearer-auth';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyRequest, LogController } from 'fastify';
import client from 'prom-client';
import { createLogger } from '../../src/daemon/logger.js';
import { Authenticator } from '../../src/http/authenticate.js';
import { authenticationHook } from '../../src/http/request-hook.js';
import { SourcePenalties } from '../../src/http/source-penalties.js';
import { openDeployment } from '../../src/service/deployment.js';
import { resolveSettings } from '../../src/service/settings.js';
import { say, stdinLines } from './children.js';

export interface PeerServerSpec {
  hook: 'none' | 'bearer' | 'token-shadow' | 'token-shadow-async';
  /** For bearer: the one accepted key. */
  bearerKey?: string;
  /** For token-shadow: the deployment's directories. */
  configDir?: string;
  runtimeDir?: string;
}

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2] ?? '{}') as PeerServerSpec;
  const log = createLogger('peer-server', 'warn');
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
  });
  await app.register(formbody);
  app.decorateRequest('identity', null);
  let close = async (): Promise<void> => undefined;
  if (spec.hook === 'token-shadow' || spec.hook === 'token-shadow-async') {
    const settings = resolveSettings({
      ...(spec.configDir ? { configDir: spec.configDir } : {}),
      ...(spec.runtimeDir ? { runtimeDir: spec.runtimeDir } : {}),
      hashThreads: 1,
    });
    const deployment = openDeployment(settings, 'worker', { warn: (m) => log.warn(m) });
    await deployment.shadow.warmUp();
    const auth = new Authenticator({ users: deployment.users, shadow: deployment.shadow });
    if (spec.hook === 'token-shadow') {
      const penalties = new SourcePenalties();
      const hook = authenticationHook({ auth, penalties });
      app.get('/api2/json/version', { onRequest: [hook] }, async () => ({
        data: { version: '0' },
      }));
    } else {
      const histogram = new client.Histogram({
        name: 'token_shadow_authentication_seconds',
        help: 'as the worker had it',
        buckets: [1e-6, 5e-6, 2e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1],
      });
      const hook = async (request: FastifyRequest) => {
        const start = process.hrtime.bigint();
        request.identity = await auth.authenticate(request.headers);
        histogram.observe(Number(process.hrtime.bigint() - start) / 1e9);
      };
      app.get('/api2/json/version', { onRequest: [hook] }, async () => ({
        data: { version: '0' },
      }));
    }
    close = () => deployment.close();
  } else if (spec.hook === 'bearer') {
    await app.register(async (api) => {
      await api.register(bearerAuth, { keys: new Set([spec.bearerKey ?? '']) });
      api.get('/api2/json/version', async () => ({ data: { version: '0' } }));
    });
  } else {
    app.get('/api2/json/version', async () => ({ data: { version: '0' } }));
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  say({ port: typeof address === 'object' && address ? address.port : 0 });
  const next = stdinLines();
  while ((await next()) !== 'eof');
  await app.close();
  await close();
  process.exit(0);
}

await main();
