#!/usr/bin/env node
/**
 * The privileged manager: the daemons' only writer of user.cfg and token.shadow
 * (tokenctl, run by root on the host, writes them too: see src/service). It listens only on a unix socket (0600, or 0660 for the configured group),
 * re-checks the privileges of the identity each request names, bumps the
 * generations through the stores, and logs every mutation without secrets.
 */
import { promises as fsp } from 'node:fs';
import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { ApiError, BusyError, TokenShadowError } from '../errors.js';
import { type Deployment, ensureDirectories, openDeployment } from '../service/deployment.js';
import { Mutations, toApiError } from '../service/operations.js';
import type { Settings } from '../service/settings.js';
import { daemonCommand, settingsFrom } from './cli-options.js';
import { createLogger, type Logger } from './logger.js';
import { type RpcRequest, type RpcResponse, serveRpc } from './rpc.js';
import { ensureCertificate } from './tls.js';

/** A string parameter, or 400: the socket is trusted, but not blindly. */
function str(p: Record<string, unknown>, name: string): string {
  const value = p[name];
  if (typeof value !== 'string')
    throw new ApiError(400, `${name} must be a string`, { [name]: 'invalid' });
  return value;
}

function obj<T>(p: Record<string, unknown>, name: string): T {
  const value = p[name] ?? {};
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new ApiError(400, `${name} must be an object`, { [name]: 'invalid' });
  }
  return value as T;
}

/** Runs one mutation request; every branch is a Mutations method. */
async function dispatch(m: Mutations, r: RpcRequest): Promise<unknown> {
  const p = r.params;
  const who = r.identity;
  switch (r.op) {
    case 'user.create':
      return m.createUser(who, str(p, 'userid'), obj(p, 'fields'));
    case 'user.update':
      return m.updateUser(who, str(p, 'userid'), obj(p, 'changes'));
    case 'user.delete':
      return m.deleteUser(who, str(p, 'userid'));
    case 'token.create':
      return m.createToken(who, str(p, 'userid'), str(p, 'tokenName'), obj(p, 'fields'));
    case 'token.update':
      return m.updateToken(who, str(p, 'userid'), str(p, 'tokenName'), obj(p, 'changes'));
    case 'token.rotate':
      return m.rotateToken(who, str(p, 'userid'), str(p, 'tokenName'));
    case 'token.delete':
      return m.deleteToken(who, str(p, 'userid'), str(p, 'tokenName'));
    case 'acl.update': {
      const roles = p.roles;
      if (!Array.isArray(roles))
        throw new ApiError(400, 'roles must be a list', { roles: 'invalid' });
      return m.updateAcl(who, { ...(p as object), path: str(p, 'path'), roles: roles.map(String) });
    }
    case 'group.create':
      return m.createGroup(
        who,
        str(p, 'groupid'),
        typeof p.comment === 'string' ? p.comment : undefined,
      );
    default:
      throw new ApiError(400, `unknown operation ${JSON.stringify(String(r.op)).slice(0, 40)}`);
  }
}

/** What the log may say about a request: ids only, never secrets or hashes. */
function describe(r: RpcRequest) {
  const p = r.params as Record<string, unknown>;
  return {
    op: r.op,
    identity: r.identity,
    target: p.tokenName ? `${p.userid}!${p.tokenName}` : (p.userid ?? p.groupid ?? p.path),
  };
}

export function handler(mutations: Mutations, log: Logger) {
  return async (request: RpcRequest): Promise<RpcResponse> => {
    const id = typeof request.id === 'number' ? request.id : -1;
    if (
      typeof request.identity !== 'string' ||
      typeof request.params !== 'object' ||
      !request.params
    ) {
      return { id, ok: false, status: 400, message: 'malformed request' };
    }
    try {
      const data = await dispatch(mutations, request);
      log.info({ ...describe(request), outcome: 'ok' }, 'mutation');
      return { id, ok: true, data };
    } catch (raw) {
      const error = toApiError(raw);
      const status =
        error instanceof ApiError ? error.status : error instanceof BusyError ? 503 : 500;
      const message =
        error instanceof TokenShadowError && status !== 500 ? error.message : 'internal error';
      log[status >= 500 ? 'error' : 'info'](
        {
          ...describe(request),
          outcome: 'refused',
          status,
          code: (error as TokenShadowError).code,
        },
        'mutation',
      );
      return {
        id,
        ok: false,
        status,
        message,
        ...(error instanceof ApiError && error.errors ? { errors: error.errors } : {}),
      };
    }
  };
}

/** Removes a socket file left by a dead manager; refuses if one is still listening. */
async function clearStaleSocket(socketPath: string): Promise<void> {
  const alive = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another manager is listening on ${socketPath}`);
  await fsp.rm(socketPath, { force: true });
}

export interface RunningManager {
  deployment: Deployment;
  server: net.Server;
  stop(): Promise<void>;
}

export async function startManager(
  settings: Settings,
  log: Logger = createLogger('manager'),
): Promise<RunningManager> {
  await ensureDirectories(settings);
  const deployment = openDeployment(settings, 'manager', { warn: (m) => log.warn(m) });
  // First start: user.cfg with root@pam (re-added on every read) and the API certificate.
  await deployment.users.mutate(() => undefined);
  const tls = await ensureCertificate(settings.certPath, settings.keyPath, settings.gid);
  if (tls.created) log.info({ cert: settings.certPath }, 'created a self-signed certificate');
  await clearStaleSocket(settings.socketPath);
  const server = net.createServer();
  serveRpc(server, handler(new Mutations(deployment.users, deployment.shadow), log));
  const oldMask = process.umask(0o177);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(settings.socketPath, resolve);
    });
  } finally {
    process.umask(oldMask);
  }
  if (settings.gid !== undefined) {
    await fsp.chown(settings.socketPath, -1, settings.gid);
    await fsp.chmod(settings.socketPath, 0o660);
  } else {
    await fsp.chmod(settings.socketPath, 0o600);
  }
  log.info(
    {
      socket: settings.socketPath,
      config: settings.configDir,
      page: deployment.page?.path ?? null,
    },
    'manager ready',
  );
  let stopping: Promise<void> | null = null;
  return {
    deployment,
    server,
    stop() {
      stopping ??= (async () => {
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await deployment.close();
        await fsp.rm(settings.socketPath, { force: true });
      })();
      return stopping;
    },
  };
}

async function main(argv: string[]): Promise<void> {
  const command = daemonCommand('token-shadow-manager', 'the privileged token manager').parse(argv);
  const settings = settingsFrom(command.opts());
  const log = createLogger('manager');
  const manager = await startManager(settings, log);
  const shutdown = (signal: string) => {
    log.info({ signal }, 'stopping');
    manager.stop().then(
      () => process.exit(0),
      (error) => {
        log.error({ err: String(error) }, 'stop failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main(process.argv).catch((error) => {
    process.stderr.write(
      `token-shadow-manager: ${error instanceof Error ? error.message : error}\n`,
    );
    process.exit(1);
  });
}
