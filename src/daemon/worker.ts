/**
 * One API worker: a fastify server (HTTPS, or plain HTTP on loopback when
 * asked) with the routes, its own deployment view and a connection to the
 * manager. Closing drains in-flight requests first.
 */
import { readFile } from 'node:fs/promises';
import formbody from '@fastify/formbody';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import { Authenticator } from '../http/authenticate.js';
import { openDeployment } from '../service/deployment.js';
import type { Settings } from '../service/settings.js';
import type { Logger } from './logger.js';
import { registerWorkerMetrics } from './metrics.js';
import { registerRoutes } from './routes/index.js';
import { RpcClient } from './rpc.js';

export interface WorkerOptions {
  publicVersion?: boolean;
  metrics?: boolean;
}

export interface RunningWorker {
  app: FastifyInstance;
  port: number;
  close(): Promise<void>;
}

export async function startWorker(
  settings: Settings,
  log: Logger,
  options: WorkerOptions = {},
): Promise<RunningWorker> {
  const deployment = openDeployment(settings, 'worker', { warn: (m) => log.warn(m) });
  await deployment.shadow.warmUp();
  const auth = new Authenticator({ users: deployment.users, shadow: deployment.shadow });
  const rpc = new RpcClient(settings.socketPath);
  const https = settings.plainHttp
    ? null
    : { cert: await readFile(settings.certPath), key: await readFile(settings.keyPath) };
  const app = Fastify({
    loggerInstance: log,
    // No line per request: the metrics count them, and logging would cost more than a cached verify.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: 64 * 1024,
    ...(https ? { https } : {}),
  }) as unknown as FastifyInstance;
  await app.register(formbody);
  const observe = options.metrics === false ? undefined : registerWorkerMetrics(deployment);
  registerRoutes(app, {
    auth,
    users: deployment.users,
    rpc,
    ...(options.publicVersion ? { publicVersion: true } : {}),
    ...(observe ? { onAuthenticated: observe } : {}),
  });
  await app.listen({ host: settings.host, port: settings.port });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : settings.port;
  let closing: Promise<void> | null = null;
  return {
    app,
    port,
    close() {
      closing ??= (async () => {
        await app.close();
        rpc.close();
        await deployment.close();
      })();
      return closing;
    },
  };
}
